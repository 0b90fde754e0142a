"""An in-memory mirror of every tenant, kept by list + watch of the store.

`TenantIndex` is the data (pure, synchronous); `IndexSync` is the one task that
keeps it current: list, watch from the listing's revision, relist on
WatchExpired, back off and keep the last synced state while the store is down.

A record the store cannot read is not in the index: to the listeners it is a deletion
(refused, kicked). The index remembers its name and why (never its data), logs it once
when it becomes unreadable and counts it, and forgets it once the record is deleted or
readable again.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Callable
from datetime import datetime

from tenants.errors import StoreError, WatchExpired
from tenants.record import Tenant
from tenants.store import Change, ChangeType, Listing, TenantStore
from tenants.tasks import BackgroundTask

log = logging.getLogger(__name__)

_AFTER_ANY_ID = "\U0010ffff"
# A record's ip_hash is the caller's network digest (this many characters) followed by
# its group digest (manager/networks.py): the index counts both.
NETWORK_KEY_LEN = 16

Listener = Callable[[Tenant | None, Tenant | None], None]
"""Called with (before, after) for every tenant that changed; None means absent."""


class TenantIndex:
    def __init__(self) -> None:
        self._tenants: dict[str, Tenant] = {}
        self._by_ip: dict[str, set[str]] = {}
        self._by_network: dict[str, set[str]] = {}
        # (expires_at, instance_id) of every tenant, sorted: count_live and expired_ids
        # are binary searches, not scans (the manager counts on every POST: at 100k
        # tenants a scan cost ~20 ms, under its lock; the reaper asks every second).
        self._expiries: list[tuple[datetime, str]] = []
        self._bulk = False  # inside replace(): _expiries is rebuilt once at the end
        self._listeners: list[Listener] = []
        self._unreadable: dict[str, str] = {}  # name as stored -> why it cannot be read
        self.unreadable_found = 0  # times a record was found unreadable (a counter)
        self.synced = False
        self.revision = ""

    def __len__(self) -> int:
        return len(self._tenants)

    def get(self, instance_id: str) -> Tenant | None:
        return self._tenants.get(instance_id)

    def tenants(self) -> list[Tenant]:
        return list(self._tenants.values())

    def unreadable(self) -> dict[str, str]:
        """The records that cannot be read: name as stored -> why (never the data)."""
        return dict(self._unreadable)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def count_live(
        self, now: datetime, ip_hash: str | None = None, *, network: str | None = None
    ) -> int:
        """Tenants not expired at `now` (`Tenant.is_live`): of one caller group if
        `ip_hash` is given, of one network (an ip_hash's first NETWORK_KEY_LEN) if
        `network` is, else all."""
        if ip_hash is None and network is None:  # live: now < expires_at
            return len(self._expiries) - self._expired_count(now)
        return len(self._live_expiries(now, ip_hash, network))

    def tenants_of(self, ip_hash: str) -> list[Tenant]:
        """The tenants of one caller group (live or not)."""
        return [self._tenants[i] for i in self._by_ip.get(ip_hash, ())]

    def soonest_expiry(
        self, now: datetime, ip_hash: str | None = None, *, network: str | None = None
    ) -> datetime | None:
        """The first expiry after `now` among the tenants count_live counts."""
        if ip_hash is None and network is None:
            first = self._expired_count(now)
            return self._expiries[first][0] if first < len(self._expiries) else None
        return min(self._live_expiries(now, ip_hash, network), default=None)

    def _live_expiries(
        self, now: datetime, ip_hash: str | None, network: str | None
    ) -> list[datetime]:
        if network is not None:
            ids = self._by_network.get(network, set())
        else:
            ids = self._by_ip.get(ip_hash or "", set())
        tenants = (self._tenants[i] for i in ids)
        return [t.expires_at for t in tenants if t.is_live(now)]

    def expired_ids(self, now: datetime) -> list[str]:
        """Instance ids expired at `now` (`Tenant.is_expired`), soonest-expired first
        (ties by id): what exhook.reaper.expired_ids computes from tenants(), without
        the scan."""
        return [instance_id for _, instance_id in self._expiries[: self._expired_count(now)]]

    def _expired_count(self, now: datetime) -> int:
        # Entries with expires_at <= now sort before (now, _AFTER_ANY_ID): that string
        # (the last code point) compares after every instance id.
        return bisect.bisect_right(self._expiries, (now, _AFTER_ANY_ID))

    def replace(self, listing: Listing) -> None:
        """Swap in a fresh listing; listeners hear about every difference."""
        fresh = {t.instance_id: t for t in listing.tenants}
        self._bulk = True
        try:
            for instance_id in list(self._tenants):
                if instance_id not in fresh:
                    self._set(instance_id, None)
            for instance_id, tenant in fresh.items():
                if self._tenants.get(instance_id) != tenant:
                    self._set(instance_id, tenant)
        finally:
            self._bulk = False
            self._expiries = sorted((t.expires_at, t.instance_id) for t in self._tenants.values())
        unreadable = {u.instance_id: u.reason for u in listing.unreadable}
        for name, reason in unreadable.items():
            self._mark_unreadable(name, reason)
        for name in set(self._unreadable) - set(unreadable):
            del self._unreadable[name]
        self.revision = listing.revision
        self.synced = True

    def apply(self, change: Change) -> None:
        after = None if change.type is ChangeType.DELETED else change.tenant
        self._set(change.instance_id, after)
        if after is None and change.unreadable:
            self._mark_unreadable(change.instance_id, change.unreadable)
        else:
            self._unreadable.pop(change.instance_id, None)
        self.revision = change.revision

    def _mark_unreadable(self, name: str, reason: str) -> None:
        if self._unreadable.get(name) == reason:
            return  # known already: logged and counted once
        self._unreadable[name] = reason
        self.unreadable_found += 1
        log.warning("tenant record unreadable, treated as deleted: %s", reason)

    def put(self, tenant: Tenant) -> None:
        """Record a write this process just made, before its watch event arrives."""
        self._set(tenant.instance_id, tenant)

    def _set(self, instance_id: str, after: Tenant | None) -> None:
        before = self._tenants.get(instance_id)
        if before is not None and before.ip_hash:
            _discard(self._by_ip, before.ip_hash, instance_id)
            _discard(self._by_network, before.ip_hash[:NETWORK_KEY_LEN], instance_id)
        if after is None:
            self._tenants.pop(instance_id, None)
        else:
            self._tenants[instance_id] = after
            if after.ip_hash:
                self._by_ip.setdefault(after.ip_hash, set()).add(instance_id)
                network = after.ip_hash[:NETWORK_KEY_LEN]
                self._by_network.setdefault(network, set()).add(instance_id)
        if not self._bulk:
            if before is not None:
                expiries = self._expiries
                del expiries[bisect.bisect_left(expiries, (before.expires_at, instance_id))]
            if after is not None:
                bisect.insort(self._expiries, (after.expires_at, instance_id))
        if before != after:
            for listener in self._listeners:
                try:
                    listener(before, after)
                except Exception:
                    log.exception("tenant index listener failed")


def _discard(groups: dict[str, set[str]], key: str, instance_id: str) -> None:
    ids = groups.get(key)
    if ids is not None:
        ids.discard(instance_id)
        if not ids:
            del groups[key]


class IndexSync(BackgroundTask):
    """Owns the list + watch task that keeps a TenantIndex current."""

    task_name = "tenant-index-sync"

    def __init__(
        self,
        store: TenantStore,
        index: TenantIndex,
        *,
        retry_initial: float = 0.2,
        retry_max: float = 5.0,
    ) -> None:
        self.store = store
        self.index = index
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._synced = asyncio.Event()
        self.watch_restarts = 0
        self.store_reachable = False
        self.last_sync_monotonic = 0.0

    async def wait_synced(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _run(self) -> None:
        delay = self._retry_initial
        while True:
            try:
                listing = await self.store.list()
                self.index.replace(listing)
                self.store_reachable = True
                self.last_sync_monotonic = time.monotonic()
                self._synced.set()
                delay = self._retry_initial
                async for change in self.store.watch(listing.revision):
                    self.index.apply(change)
                    self.last_sync_monotonic = time.monotonic()
                self.watch_restarts += 1
            except WatchExpired as exc:
                self.watch_restarts += 1
                log.info("tenant watch expired, relisting: %s", exc)
            except StoreError as exc:
                self.watch_restarts += 1
                self.store_reachable = False
                log.warning("tenant store unreachable, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
            except Exception:
                self.watch_restarts += 1
                log.exception("tenant index sync failed, retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
