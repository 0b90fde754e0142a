"""Delete tenant records at their `expires_at`.

Every replica runs one: deleting a record another replica deleted first returns False,
which is success. The deletion reaches every index through the store's watch, and each
index listener turns it into a namespace removal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from tenants.errors import StoreError
from tenants.index import TenantIndex
from tenants.store import TenantStore

log = logging.getLogger(__name__)


class Reaper:
    def __init__(
        self,
        store: TenantStore,
        index: TenantIndex,
        *,
        clock: Callable[[], datetime],
        interval: float = 1.0,
        on_expired: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._index = index
        self._clock = clock
        self._interval = interval
        self._on_expired = on_expired
        self.reaped = 0  # records this replica deleted
        self.failures = 0

    async def run(self) -> None:
        while True:
            try:
                await self.reap_once()
            except Exception:
                log.exception("reaper pass failed")
            await asyncio.sleep(self._interval)

    async def reap_once(self) -> int:
        """Delete every expired record the index holds; the number this call deleted."""
        deleted = 0
        expired = self._index.expired_ids(self._clock())
        if self._on_expired is not None:
            for instance_id in expired:
                # Kick even if the store refuses the delete: expiry ends sessions regardless.
                self._on_expired(instance_id)
        for instance_id in expired:
            try:
                gone_now = await self._store.delete(instance_id)
            except StoreError as exc:
                self.failures += 1
                log.warning("%s: expired, but deleting its record failed: %s", instance_id, exc)
                break  # the store is likely down: the next pass tries again
            if gone_now:
                deleted += 1
                self.reaped += 1
                log.info("%s: expired, record deleted", instance_id)
        return deleted
