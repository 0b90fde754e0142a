"""Reading a record straight from the store when the index has not seen it yet.

A client may CONNECT a few milliseconds after the manager answered its POST, before
the watch has brought the new record to this process (the embedded store polls, a
Kubernetes watch event takes its time, another replica wrote it). For a username
shaped like ours that the index lacks, the hook reads the store once while it pays
the decoy verify anyway, so the answer takes no longer than for a known tenant.

Reads are bounded: at most `rate` per second (a token bucket, so sprays of random
ids cannot turn into a load on the Kubernetes API), each within `timeout`. Beyond
that, or when the store fails, the index's answer (deny) stands.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from tenants.errors import StoreError
from tenants.record import Tenant
from tenants.store import TenantStore

log = logging.getLogger(__name__)


class StoreLookup:
    def __init__(
        self,
        store: TenantStore,
        *,
        rate: float = 20.0,
        timeout: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._rate = rate
        self._timeout = timeout
        self._clock = clock
        self._tokens = rate
        self._updated = clock()
        self.reads = 0
        self.found = 0
        self.refused = 0

    def _take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._rate, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    async def get(self, instance_id: str) -> Tenant | None:
        """The stored record, or None if absent, unreadable, too slow, or over the rate."""
        if self._rate <= 0 or not self._take():
            self.refused += 1
            return None
        self.reads += 1
        try:
            async with asyncio.timeout(self._timeout):
                tenant = await self._store.get(instance_id)
        except (StoreError, TimeoutError) as exc:
            log.debug("read-through of %s failed: %s", instance_id, exc)
            return None
        if tenant is not None:
            self.found += 1
        return tenant
