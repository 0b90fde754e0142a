"""Creating an instance: limits, minting, hashing, storing. No HTTP here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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


class ManagerError(ZeroEmqxError):
    """Base of the errors the manager answers with a 4xx."""


class BadRequest(ManagerError):
    pass


class TooManyRequests(ManagerError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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
    """Mints instances within the per-IP and global limits."""

    def __init__(
        self,
        settings: ManagerSettings,
        store: TenantStore,
        index: TenantIndex,
        *,
        hash_executor: Executor | None = None,
        clock: Callable[[], datetime] = utc_now,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._index = index
        self._executor = hash_executor
        self._clock = clock
        self._rate = rate_limiter or RateLimiter(settings.per_ip_rate)
        # Count + create must not interleave, or concurrent requests overshoot the caps;
        # with no cap configured there is nothing to count and creates run in parallel.
        capped = settings.per_ip_max_live or settings.max_live_instances
        self._cap_lock: contextlib.AbstractAsyncContextManager[object] = (
            asyncio.Lock() if capped else contextlib.nullcontext()
        )

    async def create(self, request: CreateRequest, ip_hash: str) -> Created:
        wait = self._rate.acquire(ip_hash)
        if wait > 0:
            raise TooManyRequests("too many instances created from this address", wait)
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

    def _check_caps(self, now: datetime, ip_hash: str) -> None:
        s = self._settings
        if s.per_ip_max_live and self._index.count_live(now, ip_hash) >= s.per_ip_max_live:
            raise TooManyRequests(
                "this address has the maximum number of live instances",
                self._seconds_until_one_expires(now, ip_hash),
            )
        if s.max_live_instances and self._index.count_live(now) >= s.max_live_instances:
            raise TooManyRequests(
                "the service has the maximum number of live instances",
                self._seconds_until_one_expires(now, None),
            )

    def _seconds_until_one_expires(self, now: datetime, ip_hash: str | None) -> float:
        expiries = [
            t.expires_at
            for t in self._index.tenants()
            if t.is_live(now) and (ip_hash is None or t.ip_hash == ip_hash)
        ]
        if not expiries:
            return 60.0
        return max(1.0, (min(expiries) - now).total_seconds())
