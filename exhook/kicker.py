"""Turn tenant changes into EMQX REST calls, retried until EMQX confirms.

`job_for_change` (pure) says what a (before, after) change of a record needs; `Kicker`
keeps at most one job per instance id, runs them on a fixed number of workers and
retries each with exponential backoff until EMQX lists no session it must end.
Jobs are never dropped, except a removal for a tenant that is live again.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from exhook.emqx_api import EmqxApi, EmqxApiError, EmqxClient
from tenants.credentials import is_instance_id
from tenants.errors import InvalidRecord, StoreError
from tenants.index import TenantIndex
from tenants.record import Tenant
from tenants.store import TenantStore

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class JobKind(StrEnum):
    REAUTH = "reauth"  # password hash replaced: end the sessions that exist now, keep the ns
    PAUSE = "pause"  # paused: end every session, keep the namespace
    REMOVE = "remove"  # record gone: delete the namespace and end every session


_RANK = {JobKind.REAUTH: 1, JobKind.PAUSE: 2, JobKind.REMOVE: 3}


def merge_kinds(a: JobKind, b: JobKind) -> JobKind:
    """Two requests for one tenant: the stronger one covers the weaker."""
    return a if _RANK[a] >= _RANK[b] else b


def job_for_change(before: Tenant | None, after: Tenant | None) -> JobKind | None:
    """What a record change asks of EMQX; None when nothing (creation, unpause, no-op edit)."""
    if before is None:
        return None
    if after is None:
        return JobKind.REMOVE
    if after.paused and not before.paused:
        return JobKind.PAUSE
    if after.password_hash != before.password_hash:
        return JobKind.REAUTH
    return None


def backoff_delay(failures: int, initial: float, maximum: float, jitter: float = 0.0) -> float:
    """initial * 2^(failures-1), capped at maximum, minus up to `jitter` (0..1) of it."""
    base: float = min(maximum, initial * 2.0 ** max(0, min(failures - 1, 62)))
    return base * (1.0 - jitter)


def sessions_to_end(
    kind: JobKind, clients: Sequence[EmqxClient], snapshot: frozenset[tuple[str, str]] | None
) -> list[EmqxClient]:
    """REAUTH ends only the sessions seen when the job began (a reconnect with the new
    password is a new session); PAUSE and REMOVE end every session of the tenant."""
    if kind is JobKind.REAUTH and snapshot is not None:
        return [c for c in clients if (c.clientid, c.connected_at) in snapshot]
    return list(clients)


class Result(StrEnum):
    CONFIRMED = "confirmed"  # EMQX lists no session the job must end
    PENDING = "pending"  # sessions were left and have been kicked: re-check later
    DROPPED = "dropped"  # removal of a tenant that is live again: nothing to do


@dataclass
class _Job:
    kind: JobKind
    generation: int = 0
    failures: int = 0
    snapshot: frozenset[tuple[str, str]] | None = None
    namespace_done: bool = False  # the namespace delete/kick went through once


class Kicker:
    """One job per instance id, `concurrency` at a time, retried until confirmed."""

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

    def pending_kind(self, instance_id: str) -> JobKind | None:
        job = self._jobs.get(instance_id)
        return None if job is None else job.kind

    def request(self, instance_id: str, kind: JobKind) -> None:
        """Ask for `kind` on `instance_id`; merged with any job already there for it."""
        if not is_instance_id(instance_id):
            log.warning("refusing to act on a name that is not an instance id")
            return
        job = self._jobs.get(instance_id)
        if job is None:
            self._jobs[instance_id] = _Job(kind)
            self._ready.put_nowait(instance_id)
            log.info("%s: %s job queued", instance_id, kind)
            return
        merged = merge_kinds(job.kind, kind)
        if merged is not job.kind or merged is JobKind.REAUTH:
            # A stronger job, or another password change: run (again) once more.
            job.kind = merged
            job.generation += 1
            job.snapshot = None
            job.namespace_done = False

    # -- tasks ---------------------------------------------------------------------

    async def run_worker(self) -> None:
        while True:
            instance_id = await self._ready.get()
            job = self._jobs.get(instance_id)
            if job is None:
                continue
            generation, kind = job.generation, job.kind
            result: Result | None = None
            try:
                result = await self._attempt(instance_id, job, generation)
            except EmqxApiError as exc:
                self._log_failure(instance_id, kind, job.failures + 1, str(exc))
            except Exception as exc:
                log.exception("%s: %s job failed unexpectedly", instance_id, kind)
                self._log_failure(instance_id, kind, job.failures + 1, type(exc).__name__)
            self._settle(instance_id, job, generation, result)

    async def run_scheduler(self) -> None:
        """Moves jobs whose backoff has elapsed back onto the ready queue."""
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            now = loop.time()
            while self._delayed and self._delayed[0][0] <= now:
                _, _, instance_id = heapq.heappop(self._delayed)
                self._ready.put_nowait(instance_id)
            timeout = self._delayed[0][0] - now if self._delayed else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    # -- one attempt ------------------------------------------------------------------

    async def _attempt(self, instance_id: str, job: _Job, generation: int) -> Result:
        """One try at `job` as it was at `generation` (a request meanwhile re-runs it)."""
        kind = job.kind
        if kind is JobKind.REMOVE and await self._is_live(instance_id):
            return Result.DROPPED
        if not job.namespace_done:
            # Once is enough: each call starts EMQX's kicker again. Re-checks only list
            # the tenant's sessions and kick the leftovers by client id.
            if kind is JobKind.REMOVE:
                outcome = await self._api.delete_namespace(instance_id)
                log.debug("%s: namespace delete: %s", instance_id, outcome)
            elif kind is JobKind.PAUSE:
                outcome = await self._api.kick_namespace(instance_id)
                log.debug("%s: namespace kick: %s", instance_id, outcome)
            if job.generation == generation:
                job.namespace_done = True
        clients = await self._api.list_clients(instance_id)
        snapshot = job.snapshot
        if kind is JobKind.REAUTH and snapshot is None:
            snapshot = frozenset((c.clientid, c.connected_at) for c in clients)
            if job.generation == generation:
                job.snapshot = snapshot
        left = sessions_to_end(kind, clients, snapshot)
        if not left:
            return Result.CONFIRMED
        await self._api.kick_clients([c.clientid for c in left])
        log.info("%s: kicked %d remaining session(s), re-checking", instance_id, len(left))
        return Result.PENDING

    async def _is_live(self, instance_id: str) -> bool:
        """A live record again (re-created id)? The index first, then the store itself."""
        now = self._clock()
        if _live(self._index.get(instance_id), now):
            return True
        try:
            return _live(await read_record(self._store, instance_id), now)
        except StoreError as exc:
            log.info("%s: store unreachable, trusting the index: %s", instance_id, exc)
            return False

    def _settle(self, instance_id: str, job: _Job, generation: int, result: Result | None) -> None:
        if result in (Result.CONFIRMED, Result.DROPPED):
            if job.generation != generation:  # asked again meanwhile: run once more
                job.failures = 0
                self._ready.put_nowait(instance_id)
                return
            del self._jobs[instance_id]
            if result is Result.DROPPED:
                self.jobs_dropped += 1
                log.info("%s: tenant is live again, removal dropped", instance_id)
                return
            self.kicks_ok += 1
            if job.kind is JobKind.REMOVE:
                self.namespaces_removed += 1
            log.info("%s: %s confirmed by EMQX", instance_id, job.kind)
            return
        job.failures += 1
        self.kick_retries += 1
        delay = backoff_delay(
            job.failures, self._retry_initial, self._retry_max, random.uniform(0.0, 0.2)
        )
        due = asyncio.get_running_loop().time() + delay
        heapq.heappush(self._delayed, (due, next(self._seq), instance_id))
        self._wake.set()

    @staticmethod
    def _log_failure(instance_id: str, kind: JobKind, failures: int, reason: str) -> None:
        level = logging.WARNING if failures <= 3 or failures % 10 == 0 else logging.DEBUG
        log.log(
            level, "%s: %s attempt %d failed, will retry: %s", instance_id, kind, failures, reason
        )


async def read_record(store: TenantStore, instance_id: str) -> Tenant | None:
    """The stored record; an unreadable one counts as absent, as the index treats it."""
    try:
        return await store.get(instance_id)
    except InvalidRecord as exc:
        log.info("%s: record unreadable, treated as gone: %s", instance_id, exc)
        return None


def _live(tenant: Tenant | None, now: datetime) -> bool:
    return tenant is not None and not tenant.is_expired(now)
