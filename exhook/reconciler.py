"""Level-triggered clean-up: whatever EMQX still holds for a tenant that is gone is removed.

After the index has synced once, and then every RECONCILE_INTERVAL_SECONDS, EMQX's
namespace list is compared with the tenant records: a namespace named like one of our
instance ids with no live record is removed (after an authoritative `store.get`, since
another replica may have just created that tenant; EMQX's namespace removal ends the
sessions of its scoped credentials too), and sessions of paused tenants (any of their
usernames) are kicked. A kick missed while the ExHook was down or EMQX unreachable is made here.

EMQX's retainer is listed too: `DELETE /mt/ns/{ns}` leaves a namespace's retained
messages behind and forgets the namespace, so a teardown missed after that point shows
only there. Every instance-like first topic level (`<id>/...`) with no live record gets
the same removal job (namespace, sessions, then `<id>/#` purged).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from exhook.emqx_api import EmqxApi, EmqxApiError
from exhook.kick_plan import JobKind, backoff_delay
from exhook.kicker import Kicker
from tenants.credentials import is_instance_id
from tenants.errors import StoreError
from tenants.index import IndexSync, TenantIndex
from tenants.record import Tenant
from tenants.store import TenantStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReconcilePlan:
    suspects: tuple[str, ...]  # ours in EMQX with no live record in the index: confirm, remove
    paused: tuple[str, ...]  # paused tenants: their sessions must not exist


def retained_namespaces(topics: Iterable[str]) -> set[str]:
    """The first topic level of each retained topic (the mountpoint `<ns>/`)."""
    return {topic.partition("/")[0] for topic in topics}


def plan_reconcile(
    namespaces: Iterable[str],
    tenants: Mapping[str, Tenant],
    now: datetime,
    retained: Iterable[str] = (),
) -> ReconcilePlan:
    """Pure: what to check, from EMQX's namespaces and the namespaces that hold retained
    messages. Names that are not instance ids are never touched."""
    suspects = sorted(
        {
            ns
            for ns in (*namespaces, *retained)
            if is_instance_id(ns) and (ns not in tenants or tenants[ns].is_expired(now))
        }
    )
    paused = sorted(i for i, t in tenants.items() if t.paused and not t.is_expired(now))
    return ReconcilePlan(tuple(suspects), tuple(paused))


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    removals: tuple[str, ...]
    pause_kicks: tuple[str, ...]
    retained_orphans: tuple[str, ...] = ()  # removals found only through the retainer


class Reconciler:
    def __init__(
        self,
        api: EmqxApi,
        store: TenantStore,
        index: TenantIndex,
        sync: IndexSync,
        kicker: Kicker,
        *,
        clock: Callable[[], datetime],
        interval: float = 300.0,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        self._api = api
        self._store = store
        self._index = index
        self._sync = sync
        self._kicker = kicker
        self._clock = clock
        self._interval = interval
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self.runs = 0  # completed passes
        self.failures = 0
        self.retained_orphans = 0  # instances found only by their retained messages
        self.retained_failures = 0  # passes that could not list the retainer

    async def run(self) -> None:
        await self._sync.wait_synced()
        failures = 0
        while True:
            try:
                await self.reconcile_once()
            except (EmqxApiError, StoreError) as exc:
                failures += 1
                self.failures += 1
                delay = backoff_delay(failures, self._retry_initial, self._retry_max)
                log.warning("reconcile failed, retrying in %.1fs: %s", delay, exc)
            except Exception:
                failures += 1
                self.failures += 1
                delay = backoff_delay(failures, self._retry_initial, self._retry_max)
                log.exception("reconcile failed unexpectedly, retrying in %.1fs", delay)
            else:
                failures = 0
                delay = self._interval
            await asyncio.sleep(delay)

    async def _retained_namespaces(self) -> set[str]:
        """The retainer's first topic levels; none (logged) when EMQX cannot list them
        (a retainer backend other than the built-in database answers 400), so that the
        namespace and pause part of the pass still runs."""
        try:
            return retained_namespaces(m.topic for m in await self._api.list_retained())
        except EmqxApiError as exc:
            self.retained_failures += 1
            log.warning("reconcile: cannot list the retainer, namespaces only: %s", exc)
            return set()

    async def reconcile_once(self) -> ReconcileReport:
        namespaces = [ns async for ns in self._api.list_namespaces()]
        retained = await self._retained_namespaces()
        snapshot = {t.instance_id: t for t in self._index.tenants()}
        plan = plan_reconcile(namespaces, snapshot, self._clock(), retained)
        removals: list[str] = []
        for ns in plan.suspects:
            # The index may lag another replica's fresh create: ask the store itself.
            tenant = await self._store.get(ns)
            if tenant is not None and not tenant.is_expired(self._clock()):
                log.debug("%s: namespace has a live record after all", ns)
                continue
            removals.append(ns)
            self._kicker.request(ns, JobKind.REMOVE)
        pause_kicks: list[str] = []
        for instance_id in plan.paused:
            if not await self._api.list_clients(*snapshot[instance_id].usernames()):
                continue
            tenant = await self._store.get(instance_id)  # the index may lag
            if tenant is not None and tenant.paused:
                pause_kicks.append(instance_id)
                usernames = {*snapshot[instance_id].usernames(), *tenant.usernames()}
                self._kicker.request(instance_id, JobKind.PAUSE, usernames)
        orphans = tuple(ns for ns in removals if ns not in set(namespaces))
        self.retained_orphans += len(orphans)
        self.runs += 1
        if removals or pause_kicks:
            log.info(
                "reconcile: %d instance(s) to remove (%d known only by retained messages),"
                " %d paused tenant(s) with sessions",
                len(removals),
                len(orphans),
                len(pause_kicks),
            )
        return ReconcileReport(tuple(removals), tuple(pause_kicks), orphans)
