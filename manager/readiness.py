"""Whether the manager is ready, from a recent check rather than one per probe.

`/readyz` is unauthenticated: answering it with a store call each (one Kubernetes LIST)
would let anyone drive load onto the API server. `Readiness` owns one task that checks
every READY_INTERVAL_SECONDS, each part bounded by a timeout so that a slow dependency
makes the answer "not ready" instead of stalling it:

- the tenant index has synced, and the tenant store answers `ping()`;
- EMQX's REST API answers (when EMQX_API_URL is set): the seed's contract is "ready when
  EMQX and the Kubernetes API are reachable".

`/readyz` reads the last result. A result older than STALE_AFTER intervals (the task
is stuck) counts as not ready. While not ready it checks again every second at most.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from tenants.errors import StoreError
from tenants.index import IndexSync
from tenants.tasks import BackgroundTask

log = logging.getLogger(__name__)

STALE_AFTER = 3  # intervals
Probe = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class ReadyState:
    ready: bool
    reason: str
    checked_at: float


NOT_CHECKED = ReadyState(False, "not checked yet", float("-inf"))


class Readiness(BackgroundTask):
    task_name = "manager-readiness"

    def __init__(
        self,
        sync: IndexSync,
        emqx: Probe | None,
        *,
        interval: float,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sync = sync
        self._emqx = emqx
        self._interval = interval
        self._timeout = timeout
        self._clock = clock
        self._state = NOT_CHECKED
        self.checks = 0

    def state(self) -> ReadyState:
        state = self._state
        if state is NOT_CHECKED:
            return state
        if self._clock() - state.checked_at > STALE_AFTER * self._interval + self._timeout:
            return ReadyState(False, "the readiness check is stale", state.checked_at)
        return state

    async def _run(self) -> None:
        await self._sync.wait_synced(self._interval)
        while True:
            try:
                self._state = await self.check()
            except Exception:  # a check must never end the task
                log.exception("readiness check failed")
                self._state = ReadyState(False, "the readiness check failed", self._clock())
            # Not ready: look again soon, so readiness follows recovery within a second.
            await asyncio.sleep(self._interval if self._state.ready else min(self._interval, 1.0))

    async def check(self) -> ReadyState:
        self.checks += 1
        store, emqx = await asyncio.gather(self._store_ok(), self._emqx_ok())
        now = self._clock()
        if not self._sync.index.synced:
            return ReadyState(False, "tenant index not synced yet", now)
        if not store:
            return ReadyState(False, "tenant store unreachable", now)
        if not emqx:
            return ReadyState(False, "EMQX API unreachable", now)
        return ReadyState(True, "ready", now)

    async def _store_ok(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                await self._sync.store.ping()
        except (StoreError, TimeoutError) as exc:
            log.warning("not ready: tenant store unreachable: %s", exc)
            return False
        return True

    async def _emqx_ok(self) -> bool:
        if self._emqx is None:
            return True
        try:
            async with asyncio.timeout(self._timeout):
                ok = await self._emqx()
        except TimeoutError:
            ok = False
        if not ok:
            log.warning("not ready: EMQX API unreachable")
        return ok


READINESS: web.AppKey[Readiness] = web.AppKey("readiness", Readiness)


async def readyz(request: web.Request) -> web.Response:
    state = request.app[READINESS].state()
    return web.Response(status=200 if state.ready else 503, text=state.reason + "\n")
