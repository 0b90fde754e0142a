"""Run the real manager on a free port and talk to it over HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import httpx

from manager.main import running_manager
from manager.settings import ManagerSettings
from tenants.index import IndexSync
from tenants.store import TenantStore

BASE_ENV = {"MANAGER_ADDR": "127.0.0.1:0", "IP_HASH_KEY": "test-key-0123456789abcdef"}


@dataclass
class RunningManager:
    client: httpx.AsyncClient
    sync: IndexSync
    settings: ManagerSettings


@contextlib.asynccontextmanager
async def manager_for(
    store: TenantStore, env: Mapping[str, str] | None = None
) -> AsyncIterator[RunningManager]:
    settings = ManagerSettings.from_environ({**BASE_ENV, **(env or {})})
    async with running_manager(settings, store) as (runner, sync):
        assert await sync.wait_synced(5)
        host, port = runner.addresses[0][:2]
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as client:
            yield RunningManager(client, sync, settings)
