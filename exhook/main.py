"""Running the ExHook: `serve()` for the composition root (zero_emqx)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from exhook.emqx_api import EmqxApi, HttpxEmqxApi
from exhook.lifecycle import Lifecycle, LifecycleSettings
from exhook.server import ExhookRuntime
from exhook.settings import ExhookSettings
from tenants.settings import EmqxApiSettings
from tenants.store import TenantStore

log = logging.getLogger(__name__)


async def serve(
    settings: ExhookSettings,
    store: TenantStore,
    stop: asyncio.Event,
    *,
    api_settings: EmqxApiSettings | None = None,
    lifecycle_settings: LifecycleSettings | None = None,
) -> None:
    """Run the ExHook and its lifecycle work on `store` until `stop` is set.

    The store stays the caller's: it is not closed here."""
    api_settings = api_settings or EmqxApiSettings()
    async with contextlib.AsyncExitStack() as stack:
        api: EmqxApi | None = None
        if api_settings.enabled:
            api = await stack.enter_async_context(HttpxEmqxApi(api_settings))

        def lifecycle(runtime: ExhookRuntime) -> Lifecycle:
            work = Lifecycle(store, runtime.index, runtime.sync, api, lifecycle_settings)
            runtime.metrics.watch_lifecycle(work)
            return work

        async with ExhookRuntime(settings, store, attach=[lifecycle]):
            await stop.wait()
