"""Turn tenant changes into EMQX REST calls, retried until EMQX confirms.

`job_for_change` (exhook/kick_plan.py, pure) says what a (before, after) change of a
record needs; `Kicker`
keeps at most one job per subject (an instance id, or a scoped credential's username),
runs them on a fixed number of workers and retries each with exponential backoff until
EMQX lists no session it must end. A job on an instance lists the clients of the instance
id and of every scoped username it was given (EMQX's namespace kick covers them too, but
only with emqx_mt, and misses resumed sessions before 6.2.4).

A removal runs in this order (EMQX 6.2.2: `emqx_mt_api`'s DELETE leaves the retainer
alone, and a kick publishes the client's will): delete the namespace (once), kick by
username until none is listed, then purge the instance's retained messages (`<id>/#`:
after the clients, since a kick publishes their wills, which may be retained),
until EMQX answers that nothing matches.

Before each kick the job checks that its reason still holds: the record is still gone
(REMOVE), still paused (PAUSE), the credential still absent (REVOKE); a job whose reason
is gone is dropped. A password change (REAUTH) ends only sessions EMQX says connected
before the change plus `rotation_grace` seconds, and keeps listing until that window is
over, so that a session authenticated with the old password just before the change and
registered by EMQX just after the first listing is ended too. Jobs are never dropped
otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from exhook.emqx_api import EmqxApi, EmqxApiError, Outcome, instance_filter
from exhook.kick_plan import INSTANCE_ONLY, JobKind, backoff_delay, merge_kinds, sessions_to_end
from tenants.credentials import parse_username
from tenants.errors import StoreError
from tenants.index import TenantIndex
from tenants.record import Tenant
from tenants.store import TenantStore

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class Result(StrEnum):
    CONFIRMED = "confirmed"  # EMQX lists no session the job must end (nor retained message)
    PENDING = "pending"  # sessions were left and have been kicked: re-check later
    WAITING = "waiting"  # nothing left now, but the grace window is open: look again
    DROPPED = "dropped"  # the reason is gone (live again, resumed, credential back)


@dataclass
class _Job:
    kind: JobKind
    usernames: frozenset[str] = frozenset()  # listed besides the subject (PAUSE, REMOVE)
    generation: int = 0
    failures: int = 0
    cutoff: datetime | None = None  # REAUTH: sessions connected up to here are ended
    namespace_done: bool = False  # the namespace delete went through once


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
        rotation_grace: float = 1.0,
    ) -> None:
        self._api = api
        self._store = store
        self._index = index
        self._clock = clock
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self.concurrency = concurrency
        self._grace = timedelta(seconds=rotation_grace)
        self._jobs: dict[str, _Job] = {}
        self._ready: asyncio.Queue[str] = asyncio.Queue()  # unbounded: nothing is dropped
        self._delayed: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self.kicks_ok = 0
        self.kick_retries = 0
        self.namespaces_removed = 0
        self.jobs_dropped = 0
        self.retained_purges = 0  # removals EMQX confirmed to hold no retained message
        self.retained_purge_deletes = 0  # purge calls that deleted retained messages

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
        if parsed is None or (kind in INSTANCE_ONLY and parsed[1] is not None):
            log.warning("refusing to act on a name that is not an instance id or our username")
            return
        extra = frozenset(
            u
            for u in usernames
            if kind in INSTANCE_ONLY and u != subject and _instance_of(u) == subject
        )
        cutoff = self._clock() + self._grace if kind is JobKind.REAUTH else None
        job = self._jobs.get(subject)
        if job is None:
            self._jobs[subject] = _Job(kind, extra, cutoff=cutoff)
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
            job.namespace_done = False
            if cutoff is not None:  # a later password change moves the cutoff on
                job.cutoff = cutoff if job.cutoff is None else max(job.cutoff, cutoff)

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
        if not await self._reason_holds(subject, kind):
            return Result.DROPPED
        if kind is JobKind.REMOVE and not job.namespace_done:
            # Once is enough: each call starts EMQX's kicker again. Re-checks only list
            # the tenant's sessions and kick the leftovers by client id. A pause does not
            # use EMQX's namespace kicker: it kicks whoever is in the namespace when it
            # gets there (emqx_mt_client_kicker:handle_kick/1 lists the live index at
            # each batch), a client admitted again after a resume included.
            outcome = await self._api.delete_namespace(subject)
            log.debug("%s: namespace delete: %s", subject, outcome)
            if job.generation == generation:
                job.namespace_done = True
        clients = await self._api.list_clients(subject, *sorted(job.usernames))
        left = sessions_to_end(kind, clients, job.cutoff)
        if left:
            if not await self._reason_holds(subject, kind):  # it may have changed meanwhile
                return Result.DROPPED
            await self._api.kick_clients([c.clientid for c in left])
            log.info("%s: kicked %d remaining session(s), re-checking", subject, len(left))
            return Result.PENDING
        if kind is JobKind.REMOVE:
            return await self._purge_retained(subject)
        if job.cutoff is not None and self._clock() <= job.cutoff:
            return Result.WAITING
        return Result.CONFIRMED

    async def _purge_retained(self, instance_id: str) -> Result:
        """Delete `<id>/#` from the retainer until EMQX says nothing matches (404)."""
        for _ in range(2):
            if await self._api.delete_retained(instance_filter(instance_id)) is Outcome.GONE:
                self.retained_purges += 1
                return Result.CONFIRMED
            self.retained_purge_deletes += 1
            log.info("%s: retained messages deleted, confirming", instance_id)
        return Result.PENDING

    async def _reason_holds(self, subject: str, kind: JobKind) -> bool:
        """The change that asked for the job is still what the records say."""
        if kind is JobKind.REMOVE:
            return not await self._is_live(subject)
        if kind is JobKind.REVOKE:
            return not self._has_credential_again(subject)
        if kind is JobKind.PAUSE:
            tenant = self._index.get(subject)
            return tenant is None or tenant.paused  # gone: a removal follows
        return True

    async def _is_live(self, subject: str) -> bool:
        """A live record again (re-created id)? The index first, then the store itself."""
        now = self._clock()
        if _live(self._index.get(subject), now):
            return True
        try:
            return _live(await self._store.get(subject), now)
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
                log.info("%s: %s dropped, its reason is gone", subject, job.kind)
                return
            self.kicks_ok += 1
            if job.kind is JobKind.REMOVE:
                self.namespaces_removed += 1
            log.info("%s: %s confirmed by EMQX", subject, job.kind)
            return
        if result is Result.WAITING and job.cutoff is not None:
            wait = max(0.0, (job.cutoff - self._clock()).total_seconds())
            self._schedule(subject, min(wait, self._retry_initial))
            return
        job.failures += 1
        self.kick_retries += 1
        delay = backoff_delay(
            job.failures, self._retry_initial, self._retry_max, random.uniform(0.0, 0.2)
        )
        self._schedule(subject, delay)

    def _schedule(self, subject: str, delay: float) -> None:
        due = asyncio.get_running_loop().time() + delay
        heapq.heappush(self._delayed, (due, next(self._seq), subject))
        self._wake.set()

    @staticmethod
    def _log_failure(subject: str, kind: JobKind, failures: int, reason: str) -> None:
        level = logging.WARNING if failures <= 3 or failures % 10 == 0 else logging.DEBUG
        log.log(level, "%s: %s attempt %d failed, will retry: %s", subject, kind, failures, reason)


def _instance_of(username: str) -> str | None:
    parsed = parse_username(username)
    return None if parsed is None else parsed[0]


def _live(tenant: Tenant | None, now: datetime) -> bool:
    return tenant is not None and not tenant.is_expired(now)
