"""Entry points: `serve()` for a composition root, `main()` for `zero-emqx-exhook`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from exhook.server import ExhookRuntime
from exhook.settings import ExhookSettings
from tenants.errors import ConfigError
from tenants.store import TenantStore

log = logging.getLogger(__name__)


async def serve(settings: ExhookSettings, store: TenantStore, stop: asyncio.Event) -> None:
    """Run the ExHook on `store` until `stop` is set, then shut down gracefully.

    The store stays the caller's: it is not closed here."""
    async with ExhookRuntime(settings, store):
        await stop.wait()


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set `stop` (the running loop's handlers)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def _run(settings: ExhookSettings) -> None:
    from tenants.settings import StoreSettings
    from tenants.stores import open_store

    store = open_store(StoreSettings.from_environ())
    stop = asyncio.Event()
    install_stop_signals(stop)
    try:
        await serve(settings, store, stop)
    finally:
        await store.close()


def main() -> int:
    """`zero-emqx-exhook`: settings from the environment, store from ZERO_EMQX_STORE."""
    level = os.environ.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
    logging.basicConfig(
        level=level if level in logging.getLevelNamesMapping() else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = ExhookSettings.from_environ()
        asyncio.run(_run(settings))
    except ConfigError as exc:
        print(f"zero-emqx-exhook: configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
