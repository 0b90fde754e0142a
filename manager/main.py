"""Running the manager: one context manager owns the index sync and the HTTP site."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from aiohttp import web

from manager.api_keys import ApiKeyService
from manager.app import create_app
from manager.auth import FailureLimiter
from manager.connections import ConnectionGuard, GuardedSite
from manager.context import ApiContext
from manager.emqx_clients import ConnectedClients
from manager.instances import InstanceService
from manager.metrics import ManagerMetrics
from manager.readiness import Readiness
from manager.settings import ManagerSettings
from tenants.api_keys import ApiKeyStore
from tenants.errors import ConfigError
from tenants.index import IndexSync, TenantIndex
from tenants.record import utc_now
from tenants.settings import StoreSettings
from tenants.store import TenantStore
from tenants.stores import api_key_store_for

log = logging.getLogger(__name__)

IP_KEY_FILE = "ip-hash.key"


def with_ip_hash_key(settings: ManagerSettings, store_settings: StoreSettings) -> ManagerSettings:
    """IP_HASH_KEY, or on the embedded store a random key kept beside the database.

    Every replica must hash alike, so the Kubernetes store requires the setting.
    """
    if settings.ip_hash_key is not None:
        return settings
    if store_settings.kind != "local":
        raise ConfigError("IP_HASH_KEY is required with ZERO_EMQX_STORE=kubernetes")
    path = store_settings.data_dir / IP_KEY_FILE
    return dataclasses.replace(settings, ip_hash_key=_load_or_create_key(path))


def _load_or_create_key(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_hex(32).encode())
    return path.read_bytes().strip()


@contextlib.asynccontextmanager
async def _api_context(
    settings: ManagerSettings,
    store: TenantStore,
    index: TenantIndex,
    hasher: ThreadPoolExecutor,
    metrics: ManagerMetrics,
) -> AsyncIterator[ApiContext]:
    """The JSON routes' context; its EMQX client and API key store closed on exit."""
    key_store: ApiKeyStore | None = api_key_store_for(store) if settings.management_api else None
    clients = ConnectedClients(settings.emqx, timeout_cap=settings.request_deadline_seconds / 2)
    try:
        keys = None
        if key_store is not None:
            keys = ApiKeyService(settings.bootstrap_keys, key_store, hasher=hasher)
        yield ApiContext(
            settings=settings,
            store=store,
            index=index,
            clients=clients,
            failures=FailureLimiter(settings.auth_failure_rate, metrics=metrics),
            keys=keys,
            hasher=hasher,
        )
    finally:
        await clients.aclose()
        if key_store is not None:
            await key_store.close()


@contextlib.asynccontextmanager
async def running_manager(
    settings: ManagerSettings,
    store: TenantStore,
    *,
    clock: Callable[[], datetime] = utc_now,
) -> AsyncIterator[tuple[web.AppRunner, IndexSync]]:
    """The manager listening on settings.host:port until the block exits; `clock` is the
    time new records are stamped with and live caps are counted at."""
    index = TenantIndex()
    metrics = ManagerMetrics()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="manager-hash") as hasher:
        async with (
            IndexSync(store, index) as sync,
            _api_context(settings, store, index, hasher, metrics) as context,
            Readiness(
                sync,
                context.clients.reachable if context.clients.enabled else None,
                interval=settings.ready_interval_seconds,
            ) as readiness,
        ):
            service = InstanceService(
                settings, store, index, hash_executor=hasher, clock=clock, metrics=metrics
            )
            guard = ConnectionGuard(
                max_connections=settings.max_connections,
                header_timeout=settings.header_timeout_seconds,
            )
            app = create_app(
                settings,
                service,
                sync,
                context,
                metrics=metrics,
                guard=guard,
                readiness=readiness,
            )
            runner = web.AppRunner(
                app,
                access_log=None,
                shutdown_timeout=5.0,
                keepalive_timeout=settings.keepalive_timeout_seconds,
                # After an early answer (413, 408) the unread rest of the body is read
                # and dropped for at most this long, so the client sees the answer.
                lingering_time=settings.body_timeout_seconds,
                # Bodies are small JSON: a compressed one is not inflated (no zip bombs),
                # it is read as the bytes it is, and refused as JSON.
                auto_decompress=False,
            )
            await runner.setup()
            try:
                site = GuardedSite(runner, guard, host=settings.host, port=settings.port)
                await site.start()
                log.info(
                    "manager listening on %s:%s (management API %s)",
                    settings.host,
                    settings.port,
                    "on" if context.keys is not None else "off",
                )
                yield runner, sync
            finally:
                await runner.cleanup()


async def serve(settings: ManagerSettings, store: TenantStore, stop: asyncio.Event) -> None:
    async with running_manager(settings, store):
        await stop.wait()
