"""Run the real manager on a free port and talk to it over HTTP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from aiohttp import web

from manager.main import running_manager
from manager.settings import ManagerSettings
from tenants.index import IndexSync
from tenants.record import utc_now
from tenants.store import TenantStore

BASE_ENV = {"MANAGER_ADDR": "127.0.0.1:0", "IP_HASH_KEY": "test-key-0123456789abcdef"}

# A bootstrap file's keys, for the management API tests.
ADMIN = ("admin", "admin-secret-0123456789")
VIEWER = ("viewer", "viewer-secret-0123456789")


@dataclass
class RunningManager:
    client: httpx.AsyncClient
    sync: IndexSync
    settings: ManagerSettings
    app: web.Application
    url: str


def basic(user: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def keys_file(directory: Path) -> Path:
    """A bootstrap key file with ADMIN and VIEWER (and a comment and a blank line)."""
    path = directory / "api_keys.txt"
    path.write_text(
        f"# management keys\n\n{ADMIN[0]}:{ADMIN[1]}:administrator\n"
        f"{VIEWER[0]}:{VIEWER[1]}:viewer\n"
    )
    return path


@contextlib.asynccontextmanager
async def manager_for(
    store: TenantStore,
    env: Mapping[str, str] | None = None,
    *,
    clock: Callable[[], datetime] = utc_now,
) -> AsyncIterator[RunningManager]:
    settings = ManagerSettings.from_environ({**BASE_ENV, **(env or {})})
    async with running_manager(settings, store, clock=clock) as (runner, sync):
        assert await sync.wait_synced(5)
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            yield RunningManager(client, sync, settings, runner.app, url)


async def readyz_until(m: RunningManager, status: int, text: str = "") -> httpx.Response:
    """GET /readyz until it answers `status` (and `text`); each answer comes from the
    manager's last readiness check, which runs in the background."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while True:
        response = await m.client.get("/readyz")
        if response.status_code == status and response.text.startswith(text):
            return response
        assert loop.time() < deadline, f"/readyz stayed {response.status_code}"
        await asyncio.sleep(0.05)
