"""Turn tenant changes into EMQX REST calls, retried until EMQX confirms.

`job_for_change` (pure) says what a (before, after) change of a record needs; `Kicker`
keeps at most one job per subject (an instance id, or a scoped credential's username),
runs them on a fixed number of workers and retries each with exponential backoff until
EMQX lists no session it must end. A job on an instance lists the clients of the instance
id and of every scoped username it was given (EMQX's namespace kick covers them too, but
only with emqx_mt). Jobs are never dropped, except a removal for a tenant that is live
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from exhook.emqx_api import EmqxApi, EmqxApiError, EmqxClient
from tenants.credentials import parse_username
from tenants.errors import InvalidRecord, StoreError
from tenants.index import TenantIndex
from tenants.record import Tenant
from tenants.store import TenantStore

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class JobKind(StrEnum):
    REAUTH = "reauth"  # a password hash replaced: end the sessions that exist now, keep the ns
    REVOKE = "revoke"  # a scoped credential removed: end every session of its username
    PAUSE = "pause"  # paused: end every session of the instance, keep the namespace
    REMOVE = "remove"  # record gone: delete the namespace and end every session


_RANK = {JobKind.REAUTH: 1, JobKind.REVOKE: 2, JobKind.PAUSE: 3, JobKind.REMOVE: 4}
_INSTANCE_ONLY = frozenset({JobKind.PAUSE, JobKind.REMOVE})


@dataclass(frozen=True, slots=True)
class KickRequest:
    """`kind` on `subject` (an instance id or a scoped username); `usernames` are the
    further usernames whose sessions it ends (an instance's scoped credentials)."""

    subject: str
    kind: JobKind
    usernames: frozenset[str] = frozenset()


def merge_kinds(a: JobKind, b: JobKind) -> JobKind:
    """Two requests for one tenant: the stronger one covers the weaker."""
    return a if _RANK[a] >= _RANK[b] else b


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
    kind: JobKind, clients: Sequence[EmqxClient], snapshot: frozenset[tuple[str, str]] | None
) -> list[EmqxClient]:
    """REAUTH ends only the sessions seen when the job began (a reconnect with the new
    password is a new session); REVOKE, PAUSE and REMOVE end every session listed."""
    if kind is JobKind.REAUTH and snapshot is not None:
        return [c for c in clients if (c.clientid, c.connected_at) in snapshot]
    return list(clients)


class Result(StrEnum):
    CONFIRMED = "confirmed"  # EMQX lists no session the job must end
    PENDING = "pending"  # sessions were left and have been kicked: re-check later
    DROPPED = "dropped"  # removal of a tenant (or credential) that is back: nothing to do


@dataclass
class _Job:
    kind: JobKind
    usernames: frozenset[str] = frozenset()  # listed besides the subject (PAUSE, REMOVE)
    generation: int = 0
    failures: int = 0
    snapshot: frozenset[tuple[str, str]] | None = None
    namespace_done: bool = False  # the namespace delete/kick went through once


class Kicker:
    """One job per subject, `concurrency` at a time, retried until confirmed."""

    def __init__(
        self,
        api: EmqxApi,
        store: TenantStore,
        index: TenantIndex,
        *,
        clock: Clock,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        concurrency: int = 4,
    ) -> None:
        self._api = api
        self._store = store
        self._index = index
        self._clock = clock
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self.concurrency = concurrency
        self._jobs: dict[str, _Job] = {}
        self._ready: asyncio.Queue[str] = asyncio.Queue()  # unbounded: nothing is dropped
        self._delayed: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self.kicks_ok = 0
        self.kick_retries = 0
        self.namespaces_removed = 0
        self.jobs_dropped = 0

    @property
    def pending(self) -> int:
        return len(self._jobs)

    def pending_kind(self, subject: str) -> JobKind | None:
        job = self._jobs.get(subject)
        return None if job is None else job.kind

    def pending_usernames(self, subject: str) -> frozenset[str]:
        job = self._jobs.get(subject)
        return frozenset() if job is None else job.usernames | {subject}

    def request(self, subject: str, kind: JobKind, usernames: Iterable[str] = ()) -> None:
        """Ask for `kind` on `subject` (an instance id; REAUTH and REVOKE also a scoped
        username) and, for PAUSE and REMOVE, the instance's `usernames` besides; merged
        with any job already there for it."""
        parsed = parse_username(subject)
        if parsed is None or (kind in _INSTANCE_ONLY and parsed[1] is not None):
            log.warning("refusing to act on a name that is not an instance id or our username")
            return
        extra = frozenset(
            u
            for u in usernames
            if kind in _INSTANCE_ONLY and u != subject and _instance_of(u) == subject
        )
        job = self._jobs.get(subject)
        if job is None:
            self._jobs[subject] = _Job(kind, extra)
            self._ready.put_nowait(subject)
            log.info("%s: %s job queued", subject, kind)
            return
        merged = merge_kinds(job.kind, kind)
        stronger = merged is not job.kind or merged is JobKind.REAUTH
        if stronger or not extra <= job.usernames:
            # A stronger job, another password change or more usernames: run (again).
            job.generation += 1
            job.usernames |= extra
        if stronger:
            job.kind = merged
            job.snapshot = None
            job.namespace_done = False

    # -- tasks ---------------------------------------------------------------------

    async def run_worker(self) -> None:
        while True:
            subject = await self._ready.get()
            job = self._jobs.get(subject)
            if job is None:
                continue
            generation, kind = job.generation, job.kind
            result: Result | None = None
            try:
                result = await self._attempt(subject, job, generation)
            except EmqxApiError as exc:
                self._log_failure(subject, kind, job.failures + 1, str(exc))
            except Exception as exc:
                log.exception("%s: %s job failed unexpectedly", subject, kind)
                self._log_failure(subject, kind, job.failures + 1, type(exc).__name__)
            self._settle(subject, job, generation, result)

    async def run_scheduler(self) -> None:
        """Moves jobs whose backoff has elapsed back onto the ready queue."""
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            now = loop.time()
            while self._delayed and self._delayed[0][0] <= now:
                _, _, subject = heapq.heappop(self._delayed)
                self._ready.put_nowait(subject)
            timeout = self._delayed[0][0] - now if self._delayed else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    # -- one attempt ------------------------------------------------------------------

    async def _attempt(self, subject: str, job: _Job, generation: int) -> Result:
        """One try at `job` as it was at `generation` (a request meanwhile re-runs it)."""
        kind = job.kind
        if kind is JobKind.REMOVE and await self._is_live(subject):
            return Result.DROPPED
        if kind is JobKind.REVOKE and self._has_credential_again(subject):
            return Result.DROPPED
        if not job.namespace_done:
            # Once is enough: each call starts EMQX's kicker again. Re-checks only list
            # the tenant's sessions and kick the leftovers by client id.
            if kind is JobKind.REMOVE:
                outcome = await self._api.delete_namespace(subject)
                log.debug("%s: namespace delete: %s", subject, outcome)
            elif kind is JobKind.PAUSE:
                outcome = await self._api.kick_namespace(subject)
                log.debug("%s: namespace kick: %s", subject, outcome)
            if job.generation == generation:
                job.namespace_done = True
        clients = await self._api.list_clients(subject, *sorted(job.usernames))
        snapshot = job.snapshot
        if kind is JobKind.REAUTH and snapshot is None:
            snapshot = frozenset((c.clientid, c.connected_at) for c in clients)
            if job.generation == generation:
                job.snapshot = snapshot
        left = sessions_to_end(kind, clients, snapshot)
        if not left:
            return Result.CONFIRMED
        await self._api.kick_clients([c.clientid for c in left])
        log.info("%s: kicked %d remaining session(s), re-checking", subject, len(left))
        return Result.PENDING

    async def _is_live(self, subject: str) -> bool:
        """A live record again (re-created id)? The index first, then the store itself."""
        now = self._clock()
        if _live(self._index.get(subject), now):
            return True
        try:
            return _live(await read_record(self._store, subject), now)
        except StoreError as exc:
            log.info("%s: store unreachable, trusting the index: %s", subject, exc)
            return False

    def _has_credential_again(self, username: str) -> bool:
        """An operator restored the removed credential (as the index has it now)."""
        parsed = parse_username(username)
        if parsed is None or parsed[1] is None:
            return False
        tenant = self._index.get(parsed[0])
        return tenant is not None and tenant.credential(parsed[1]) is not None

    def _settle(self, subject: str, job: _Job, generation: int, result: Result | None) -> None:
        if result in (Result.CONFIRMED, Result.DROPPED):
            if job.generation != generation:  # asked again meanwhile: run once more
                job.failures = 0
                self._ready.put_nowait(subject)
                return
            del self._jobs[subject]
            if result is Result.DROPPED:
                self.jobs_dropped += 1
                log.info("%s: live again, %s dropped", subject, job.kind)
                return
            self.kicks_ok += 1
            if job.kind is JobKind.REMOVE:
                self.namespaces_removed += 1
            log.info("%s: %s confirmed by EMQX", subject, job.kind)
            return
        job.failures += 1
        self.kick_retries += 1
        delay = backoff_delay(
            job.failures, self._retry_initial, self._retry_max, random.uniform(0.0, 0.2)
        )
        due = asyncio.get_running_loop().time() + delay
        heapq.heappush(self._delayed, (due, next(self._seq), subject))
        self._wake.set()

    @staticmethod
    def _log_failure(subject: str, kind: JobKind, failures: int, reason: str) -> None:
        level = logging.WARNING if failures <= 3 or failures % 10 == 0 else logging.DEBUG
        log.log(level, "%s: %s attempt %d failed, will retry: %s", subject, kind, failures, reason)


async def read_record(store: TenantStore, instance_id: str) -> Tenant | None:
    """The stored record; an unreadable one counts as absent, as the index treats it."""
    try:
        return await store.get(instance_id)
    except InvalidRecord as exc:
        log.info("%s: record unreadable, treated as gone: %s", instance_id, exc)
        return None


def _instance_of(username: str) -> str | None:
    parsed = parse_username(username)
    return None if parsed is None else parsed[0]


def _live(tenant: Tenant | None, now: datetime) -> bool:
    return tenant is not None and not tenant.is_expired(now)
