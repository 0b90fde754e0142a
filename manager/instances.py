"""Creating an instance: limits, minting, hashing, storing. No HTTP here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from manager.metrics import ManagerMetrics, Tier
from manager.networks import CallerKeys, network_of
from manager.rate_limit import RateLimiter
from manager.settings import ManagerSettings
from tenants.credentials import new_instance_id, new_password
from tenants.errors import AlreadyExists, StoreError, ZeroEmqxError
from tenants.hashing import hash_password
from tenants.index import TenantIndex
from tenants.record import Tenant, is_valid_tag, utc_now
from tenants.store import TenantStore

log = logging.getLogger(__name__)

CREATE_ATTEMPTS = 5
RATE_WINDOW = timedelta(seconds=60)


class ManagerError(ZeroEmqxError):
    """Base of the errors the manager answers with a 4xx."""


class BadRequest(ManagerError):
    pass


class TooManyRequests(ManagerError):
    def __init__(self, message: str, retry_after: float, tier: Tier | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.tier = tier


@dataclass(frozen=True)
class CreateRequest:
    tag: str = ""

    @classmethod
    def from_json(cls, body: object) -> CreateRequest:
        """Validate a decoded JSON body."""
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        unknown = sorted(set(body) - {"tag"})
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(unknown)}")
        tag = body.get("tag", "")
        if not isinstance(tag, str) or not is_valid_tag(tag):
            raise BadRequest(
                "tag must be a string of at most 63 characters: alphanumerics, with "
                "'-', '_' or '.' inside, starting and ending alphanumeric"
            )
        return cls(tag=tag)


@dataclass(frozen=True)
class Created:
    tenant: Tenant
    password: str = field(repr=False)


class InstanceService:
    """Mints instances within the per-caller, per-network and global limits.

    Per caller group (manager/networks.py): PER_IP_RATE creations a minute (a token
    bucket in this process, and the records the store holds of the last minute, so
    replicas share it) and PER_IP_MAX_LIVE live instances. Per network:
    PER_NETWORK_MAX_LIVE. In all: MAX_LIVE_INSTANCES, of which the last
    MAX_LIVE_RESERVED go only to networks holding no live instance, so networks at their
    caps cannot lock a newcomer out. Every count but the bucket is read from the index.
    """

    def __init__(
        self,
        settings: ManagerSettings,
        store: TenantStore,
        index: TenantIndex,
        *,
        hash_executor: Executor | None = None,
        clock: Callable[[], datetime] = utc_now,
        rate_limiter: RateLimiter | None = None,
        metrics: ManagerMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._index = index
        self._executor = hash_executor
        self._clock = clock
        self._rate = rate_limiter or RateLimiter(settings.per_ip_rate)
        self._metrics = metrics or ManagerMetrics()
        # Count + create must not interleave, or concurrent requests overshoot the caps;
        # with no cap configured there is nothing to count and creates run in parallel.
        capped = (
            settings.per_ip_max_live
            or settings.max_live_instances
            or settings.per_network_max_live
            or settings.per_ip_rate
        )
        self._cap_lock: contextlib.AbstractAsyncContextManager[object] = (
            asyncio.Lock() if capped else contextlib.nullcontext()
        )

    async def create(self, request: CreateRequest, caller: CallerKeys, ip_hash: str) -> Created:
        wait = self._rate.acquire(caller.group)
        if wait > 0:
            self._refuse(Tier.RATE, "too many instances created from this address", wait)
        password = new_password()
        loop = asyncio.get_running_loop()
        password_hash = await loop.run_in_executor(self._executor, hash_password, password)
        async with self._cap_lock:
            now = self._clock()
            self._check_caps(now, ip_hash)
            ttl = timedelta(seconds=self._settings.ttl_seconds)
            for _ in range(CREATE_ATTEMPTS):
                tenant = Tenant(
                    instance_id=new_instance_id(),
                    password_hash=password_hash,
                    created_at=now,
                    expires_at=now + ttl,
                    tag=request.tag,
                    ip_hash=ip_hash,
                )
                try:
                    stored = await self._create_once(tenant)
                except AlreadyExists:
                    log.warning("instance id %s was taken; minting another", tenant.instance_id)
                    continue
                self._index.put(stored)
                log.info("created instance %s tag=%r", stored.instance_id, stored.tag)
                return Created(stored, password)
        raise StoreError(f"no free instance id after {CREATE_ATTEMPTS} attempts")

    async def _create_once(self, tenant: Tenant) -> Tenant:
        """Store the record; if we give up waiting, take back what may have been written."""
        try:
            return await self._store.create(tenant)
        except AlreadyExists:
            raise
        except (StoreError, asyncio.CancelledError):
            with contextlib.suppress(StoreError):
                await asyncio.shield(self._store.delete(tenant.instance_id))
            raise

    def _refuse(self, tier: Tier, message: str, retry_after: float) -> None:
        self._metrics.refused(tier)
        raise TooManyRequests(message, retry_after, tier)

    def _check_caps(self, now: datetime, ip_hash: str) -> None:
        s, index, network = self._settings, self._index, network_of(ip_hash)
        if s.per_ip_rate:
            recent = self._recent_creations(now, ip_hash)
            if len(recent) >= s.per_ip_rate:
                wait = (min(recent) + RATE_WINDOW - now).total_seconds()
                self._refuse(Tier.RATE, "too many instances created from this address", wait)
        if s.per_ip_max_live and index.count_live(now, ip_hash) >= s.per_ip_max_live:
            self._refuse(
                Tier.GROUP,
                "this address has the maximum number of live instances",
                self._until_one_expires(now, index.soonest_expiry(now, ip_hash)),
            )
        in_network = index.count_live(now, network=network)
        if s.per_network_max_live and in_network >= s.per_network_max_live:
            self._refuse(
                Tier.NETWORK,
                "this network has the maximum number of live instances",
                self._until_one_expires(now, index.soonest_expiry(now, network=network)),
            )
        if s.max_live_instances:
            live = index.count_live(now)
            open_to_all = s.max_live_instances - s.max_live_reserved
            if live >= s.max_live_instances or (in_network and live >= open_to_all):
                self._refuse(
                    Tier.GLOBAL,
                    "the service has the maximum number of live instances",
                    self._until_one_expires(now, index.soonest_expiry(now)),
                )

    def _recent_creations(self, now: datetime, ip_hash: str) -> list[datetime]:
        """When the group's records of the last RATE_WINDOW were created (any replica)."""
        since = now - RATE_WINDOW
        return [
            t.created_at for t in self._index.tenants_of(ip_hash) if since < t.created_at <= now
        ]

    @staticmethod
    def _until_one_expires(now: datetime, soonest: datetime | None) -> float:
        if soonest is None:
            return 60.0
        return max(1.0, (soonest - now).total_seconds())
