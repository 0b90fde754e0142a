"""Running the ExHook: `serve()` for the composition root (zero_emqx)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from exhook.emqx_api import EmqxApi, HttpxEmqxApi
from exhook.emqx_settings import EmqxSettingsCheck
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
        check: EmqxSettingsCheck | None = None
        if api_settings.enabled:
            httpx_api = await stack.enter_async_context(HttpxEmqxApi(api_settings))
            api = httpx_api
            check = EmqxSettingsCheck(httpx_api, interval=settings.settings_check_interval)
        else:
            log.warning("EMQX_API_URL is not set: EMQX's settings are not checked, no kicks")

        def lifecycle(runtime: ExhookRuntime) -> Lifecycle:
            work = Lifecycle(store, runtime.index, runtime.sync, api, lifecycle_settings)
            runtime.metrics.watch_lifecycle(work)
            return work

        async with ExhookRuntime(settings, store, attach=[lifecycle], settings_check=check):
            await stop.wait()
