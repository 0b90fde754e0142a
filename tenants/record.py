"""The tenant record: one per instance, the contract between manager, ExHook and operators."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

TAG_MAX = 63
STATES = ("active", "paused", "expired")
# Kubernetes label-value rules: empty, or alphanumerics with -, _, . inside.
TAG_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def is_valid_tag(tag: str) -> bool:
    return len(tag) <= TAG_MAX and TAG_RE.fullmatch(tag) is not None


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def format_time(moment: datetime) -> str:
    """RFC 3339, UTC, whole seconds, `Z` suffix."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp; naive values are refused."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a timezone: {text!r}")
    return moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Tenant:
    """One instance. `revision` is the store's version of the record ('' before it is stored)."""

    instance_id: str
    password_hash: str = field(repr=False)
    created_at: datetime
    expires_at: datetime
    tag: str = ""
    ip_hash: str = field(default="", repr=False)
    paused: bool = False
    revision: str = ""

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def is_live(self, now: datetime) -> bool:
        """Counts against the limits: stored and not expired (paused ones count too)."""
        return not self.is_expired(now)

    def with_revision(self, revision: str) -> Tenant:
        return replace(self, revision=revision)

    @property
    def state(self) -> str:
        return "paused" if self.paused else "active"

    def state_at(self, now: datetime) -> str:
        """One of STATES: expired (by the clock, even before the record is reaped),
        paused, or active."""
        return "expired" if self.is_expired(now) else self.state
