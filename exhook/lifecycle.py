"""Expiry and deletion end a tenant's sessions and remove its EMQX namespace.

`Lifecycle` is one async context manager owning every background task of that work:

- the reaper deletes records at `expires_at` (exhook/reaper.py);
- an index listener turns each record change into jobs: deleted → remove the namespace,
  kick every session, then purge the instance's retained messages,
  paused → kick every session (of the instance id and of its scoped credentials), password
  hash replaced → kick the sessions made with the old one, scoped credential removed →
  kick its username's sessions (exhook/kicker.py), run by a few workers and retried until
  EMQX confirms;
- the reconciler compares EMQX's namespaces with the records at start and periodically,
  so nothing missed while this process was down is lost (exhook/reconciler.py);
- the retained quota pass removes each live instance's retained messages beyond
  QUOTA_RETAINED_MESSAGES (exhook/retained_quota.py).

Without an EMQX API (EMQX_API_URL unset) only the reaper runs: the ExHook still refuses
expired and deleted tenants, but their live sessions are not ended.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from exhook.emqx_api import EmqxApi
from exhook.kick_plan import JobKind, job_for_change
from exhook.kicker import Kicker
from exhook.reaper import Reaper
from exhook.reconciler import Reconciler
from exhook.retained_quota import RetainedQuota
from tenants.errors import ConfigError
from tenants.index import IndexSync, TenantIndex
from tenants.quotas import Quotas
from tenants.record import Tenant
from tenants.settings import env_float, env_int
from tenants.store import TenantStore
from tenants.tasks import cancel_and_wait

log = logging.getLogger(__name__)


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class LifecycleSettings:
    reap_interval: float = 1.0  # REAP_INTERVAL_SECONDS
    reconcile_interval: float = 300.0  # RECONCILE_INTERVAL_SECONDS
    kick_retry_initial: float = 0.5  # KICK_RETRY_INITIAL_SECONDS
    kick_retry_max: float = 30.0  # KICK_RETRY_MAX_SECONDS
    kick_concurrency: int = 4  # KICK_CONCURRENCY: jobs talking to EMQX at once
    # KICK_ROTATION_GRACE_SECONDS: a password change also ends sessions EMQX registers
    # up to this long after it (authenticated with the old password just before it).
    rotation_grace: float = 1.0
    retained_check_interval: float = 60.0  # RETAINED_CHECK_INTERVAL_SECONDS
    quotas: Quotas = field(default_factory=Quotas)  # QUOTA_*: the retained quota is ours

    def __post_init__(self) -> None:
        if self.kick_retry_max < self.kick_retry_initial:
            raise ConfigError("KICK_RETRY_MAX_SECONDS must be >= KICK_RETRY_INITIAL_SECONDS")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> LifecycleSettings:
        env = os.environ if environ is None else environ
        return cls(
            reap_interval=env_float(env, "REAP_INTERVAL_SECONDS", 1.0, minimum=0.001),
            reconcile_interval=env_float(env, "RECONCILE_INTERVAL_SECONDS", 300.0, minimum=0.001),
            kick_retry_initial=env_float(env, "KICK_RETRY_INITIAL_SECONDS", 0.5, minimum=0.001),
            kick_retry_max=env_float(env, "KICK_RETRY_MAX_SECONDS", 30.0, minimum=0.001),
            kick_concurrency=env_int(env, "KICK_CONCURRENCY", 4, minimum=1),
            rotation_grace=env_float(env, "KICK_ROTATION_GRACE_SECONDS", 1.0),
            retained_check_interval=env_float(
                env, "RETAINED_CHECK_INTERVAL_SECONDS", 60.0, minimum=0.001
            ),
            quotas=Quotas.from_environ(env),
        )


class Lifecycle:
    """Owns the reaper, kicker and reconciler tasks; cancelled and awaited on exit."""

    def __init__(
        self,
        store: TenantStore,
        index: TenantIndex,
        sync: IndexSync,
        api: EmqxApi | None,
        settings: LifecycleSettings | None = None,
        *,
        clock: Callable[[], datetime] = wall_clock,
    ) -> None:
        self.settings = settings or LifecycleSettings()
        self._index = index
        self._sync = sync
        self._active = False
        self._tasks: list[asyncio.Task[None]] = []
        self._expiry_requested: set[str] = set()
        s = self.settings
        self.kicker: Kicker | None = None
        self.reconciler: Reconciler | None = None
        self.retained: RetainedQuota | None = None
        if api is not None:
            self.kicker = Kicker(
                api,
                store,
                index,
                clock=clock,
                retry_initial=s.kick_retry_initial,
                retry_max=s.kick_retry_max,
                concurrency=s.kick_concurrency,
                rotation_grace=s.rotation_grace,
            )
            self.reconciler = Reconciler(
                api,
                store,
                index,
                sync,
                self.kicker,
                clock=clock,
                interval=s.reconcile_interval,
                retry_initial=s.kick_retry_initial,
                retry_max=s.kick_retry_max,
            )
            self.retained = RetainedQuota(
                api,
                index.tenants,
                quota=s.quotas.retained_messages,
                clock=clock,
                interval=s.retained_check_interval,
                retry_initial=s.kick_retry_initial,
                retry_max=s.kick_retry_max,
            )
        self.reaper = Reaper(
            store, index, clock=clock, interval=s.reap_interval, on_expired=self._on_expired
        )
        index.add_listener(self._on_change)

    # -- counters (the lead exports these to Prometheus) ----------------------------------

    @property
    def kicks_ok(self) -> int:
        return self.kicker.kicks_ok if self.kicker else 0

    @property
    def kick_retries(self) -> int:
        return self.kicker.kick_retries if self.kicker else 0

    @property
    def namespaces_removed(self) -> int:
        return self.kicker.namespaces_removed if self.kicker else 0

    @property
    def retained_purges(self) -> int:
        return self.kicker.retained_purges if self.kicker else 0

    @property
    def retained_purge_deletes(self) -> int:
        return self.kicker.retained_purge_deletes if self.kicker else 0

    @property
    def retained_orphans(self) -> int:
        return self.reconciler.retained_orphans if self.reconciler else 0

    @property
    def retained_over_quota(self) -> int:
        return self.retained.removed if self.retained else 0

    @property
    def pending_jobs(self) -> int:
        return self.kicker.pending if self.kicker else 0

    @property
    def reaped(self) -> int:
        return self.reaper.reaped

    @property
    def reconcile_runs(self) -> int:
        return self.reconciler.runs if self.reconciler else 0

    # -- tasks ----------------------------------------------------------------------------

    async def __aenter__(self) -> Lifecycle:
        self._active = True
        self._spawn("lifecycle-reaper", self.reaper.run())
        if self.kicker is not None and self.reconciler is not None:
            self._spawn("lifecycle-kick-scheduler", self.kicker.run_scheduler())
            for n in range(self.kicker.concurrency):
                self._spawn(f"lifecycle-kicker-{n}", self.kicker.run_worker())
            self._spawn("lifecycle-reconciler", self.reconciler.run())
            self._spawn("lifecycle-retained-quota", self._retained_quota())
        else:
            log.warning(
                "EMQX_API_URL is not set: expired or deleted tenants are refused at CONNECT,"
                " but their live sessions are not kicked and their namespaces stay in EMQX"
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._active = False
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(*tasks)
        if self.pending_jobs:
            log.info("%d kick job(s) left for the next start's reconcile", self.pending_jobs)

    async def _retained_quota(self) -> None:
        """After the index has synced: before that every instance would look unknown."""
        await self._sync.wait_synced()
        if self.retained is not None:
            await self.retained.run()

    def _spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(_report_exit)
        self._tasks.append(task)

    # -- index events ------------------------------------------------------------------------

    def _on_change(self, before: Tenant | None, after: Tenant | None) -> None:
        if after is None and before is not None:
            self._expiry_requested.discard(before.instance_id)
        if not self._active or self.kicker is None:
            return
        for job in job_for_change(before, after):
            self.kicker.request(job.subject, job.kind, job.usernames)

    def _on_expired(self, instance_id: str) -> None:
        if self.kicker is None or instance_id in self._expiry_requested:
            return
        self._expiry_requested.add(instance_id)
        tenant = self._index.get(instance_id)
        usernames = tenant.usernames() if tenant is not None else ()
        self.kicker.request(instance_id, JobKind.REMOVE, usernames)


def _report_exit(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("lifecycle task %s died", task.get_name(), exc_info=exc)
    else:
        log.error("lifecycle task %s ended unexpectedly", task.get_name())
