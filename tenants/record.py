"""The tenant record: one per instance, the contract between manager, ExHook and operators."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from tenants.credentials import scoped_username

TAG_MAX = 63
STATES = ("active", "paused", "expired")
# Kubernetes label-value rules: empty, or alphanumerics with -, _, . inside.
TAG_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def is_valid_tag(tag: str) -> bool:
    return len(tag) <= TAG_MAX and TAG_RE.fullmatch(tag) is not None


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# RFC 3339 section 5.6 `date-time` with its offset required, upper-case T and Z.
RFC3339_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})"
)


def format_time(moment: datetime) -> str:
    """RFC 3339, UTC, whole seconds, `Z` suffix (four-digit years, also before 1000)."""
    utc = moment.astimezone(UTC).replace(microsecond=0, tzinfo=None)
    return utc.isoformat() + "Z"


def parse_time(text: object) -> datetime:
    """An RFC 3339 timestamp with its offset, in UTC. ValueError for anything else: other
    ISO 8601 forms, naive times, impossible dates, times UTC cannot hold (such as
    9999-12-31T23:59:59-01:00). The message never repeats the text."""
    if not isinstance(text, str) or RFC3339_RE.fullmatch(text) is None:
        raise ValueError("not an RFC 3339 time with an offset")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:  # its message can quote the text
        raise ValueError("not a valid RFC 3339 time (a field out of range)") from None
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("an RFC 3339 time outside the years 1 to 9999 in UTC") from None


@dataclass(frozen=True, slots=True)
class ScopedCredential:
    """A further username/password of an instance, with publish and/or subscribe rights.
    Its username is `<instance id>.<cred_id>` (tenants.credentials.scoped_username)."""

    cred_id: str
    label: str
    password_hash: str = field(repr=False)
    allow_publish: bool
    allow_subscribe: bool
    created_at: datetime


def in_order(credentials: Iterable[ScopedCredential]) -> tuple[ScopedCredential, ...]:
    """The canonical order of a record's credentials: creation time, then id (both stores
    read them back in this order, so equal records compare equal)."""
    return tuple(sorted(credentials, key=lambda c: (c.created_at, c.cred_id)))


@dataclass(frozen=True, slots=True)
class Tenant:
    """One instance. `revision` is the store's version of the record ('' before it is stored).
    `credentials` are its scoped credentials, in creation order."""

    instance_id: str
    password_hash: str = field(repr=False)
    created_at: datetime
    expires_at: datetime
    tag: str = ""
    ip_hash: str = field(default="", repr=False)
    paused: bool = False
    credentials: tuple[ScopedCredential, ...] = ()
    revision: str = ""

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def is_live(self, now: datetime) -> bool:
        """Counts against the limits: stored and not expired (paused ones count too)."""
        return not self.is_expired(now)

    def with_revision(self, revision: str) -> Tenant:
        return replace(self, revision=revision)

    def credential(self, cred_id: str) -> ScopedCredential | None:
        return next((c for c in self.credentials if c.cred_id == cred_id), None)

    def usernames(self) -> tuple[str, ...]:
        """Every MQTT username of the instance: its id, then each scoped credential's."""
        return (self.instance_id, *(self.username_of(c) for c in self.credentials))

    def username_of(self, credential: ScopedCredential) -> str:
        return scoped_username(self.instance_id, credential.cred_id)

    @property
    def state(self) -> str:
        return "paused" if self.paused else "active"

    def state_at(self, now: datetime) -> str:
        """One of STATES: expired (by the clock, even before the record is reaped),
        paused, or active."""
        return "expired" if self.is_expired(now) else self.state
