"""What a record change asks of EMQX, as pure functions: the job kinds, which change
needs which job (`job_for_change`), how two requests merge, which sessions a job ends
(`sessions_to_end`), and the retry backoff. exhook/kicker.py runs the jobs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from exhook.emqx_api import EmqxClient
from tenants.record import Tenant, parse_time


class JobKind(StrEnum):
    REAUTH = "reauth"  # a password hash replaced: end the sessions that exist now, keep the ns
    REVOKE = "revoke"  # a scoped credential removed: end every session of its username
    PAUSE = "pause"  # paused: end every session of the instance, keep the namespace
    REMOVE = "remove"  # record gone: delete the namespace and end every session


RANK = {JobKind.REAUTH: 1, JobKind.REVOKE: 2, JobKind.PAUSE: 3, JobKind.REMOVE: 4}
INSTANCE_ONLY = frozenset({JobKind.PAUSE, JobKind.REMOVE})


@dataclass(frozen=True, slots=True)
class KickRequest:
    """`kind` on `subject` (an instance id or a scoped username); `usernames` are the
    further usernames whose sessions it ends (an instance's scoped credentials)."""

    subject: str
    kind: JobKind
    usernames: frozenset[str] = frozenset()


def merge_kinds(a: JobKind, b: JobKind) -> JobKind:
    """Two requests for one tenant: the stronger one covers the weaker."""
    return a if RANK[a] >= RANK[b] else b


def job_for_change(before: Tenant | None, after: Tenant | None) -> tuple[KickRequest, ...]:
    """What a record change asks of EMQX; nothing for a creation, an unpause, a new
    credential or a no-op edit. Deletion and pause cover every username of the instance;
    otherwise the instance's own password and each scoped credential are looked at
    separately: a credential removed is REVOKE, its hash replaced or a right taken away
    REAUTH, on its own username."""
    if before is None:
        return ()
    instance_id = before.instance_id
    if after is None:
        return (KickRequest(instance_id, JobKind.REMOVE, frozenset(before.usernames())),)
    if after.paused and not before.paused:
        everyone = frozenset((*before.usernames(), *after.usernames()))
        return (KickRequest(instance_id, JobKind.PAUSE, everyone),)
    requests = []
    if after.password_hash != before.password_hash:
        requests.append(KickRequest(instance_id, JobKind.REAUTH))
    for old in before.credentials:
        new = after.credential(old.cred_id)
        if new is None:
            requests.append(KickRequest(before.username_of(old), JobKind.REVOKE))
        elif (
            new.password_hash != old.password_hash
            or (old.allow_publish and not new.allow_publish)
            or (old.allow_subscribe and not new.allow_subscribe)
        ):
            requests.append(KickRequest(before.username_of(old), JobKind.REAUTH))
    return tuple(requests)


def backoff_delay(failures: int, initial: float, maximum: float, jitter: float = 0.0) -> float:
    """initial * 2^(failures-1), capped at maximum, minus up to `jitter` (0..1) of it."""
    base: float = min(maximum, initial * 2.0 ** max(0, min(failures - 1, 62)))
    return base * (1.0 - jitter)


def sessions_to_end(
    kind: JobKind, clients: Sequence[EmqxClient], cutoff: datetime | None
) -> list[EmqxClient]:
    """REAUTH ends only the sessions EMQX says connected at or before `cutoff` (the
    change plus the grace window; a reconnect with the new password afterwards is a new
    session); a time EMQX gives that cannot be read counts as old. REVOKE, PAUSE and
    REMOVE end every session listed."""
    if kind is JobKind.REAUTH and cutoff is not None:
        return [c for c in clients if _connected_before(c, cutoff)]
    return list(clients)


def _connected_before(client: EmqxClient, cutoff: datetime) -> bool:
    moment = _connected_at(client)
    return moment is None or moment <= cutoff


def _connected_at(client: EmqxClient) -> datetime | None:
    """EMQX's `connected_at` (RFC 3339 with an offset); None if unreadable or naive."""
    try:
        return parse_time(client.connected_at)
    except ValueError:
        return None
