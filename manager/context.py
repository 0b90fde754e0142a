"""What the JSON routes share: one object on the app, built by manager/main.py."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from manager.api_keys import ApiKeyService
from manager.auth import FailureLimiter
from manager.emqx_clients import ConnectedClients
from manager.settings import ManagerSettings
from tenants.index import TenantIndex
from tenants.record import utc_now
from tenants.store import TenantStore


@dataclass
class ApiContext:
    settings: ManagerSettings
    store: TenantStore
    index: TenantIndex
    clients: ConnectedClients
    failures: FailureLimiter
    keys: ApiKeyService | None = None  # None: the management API is off
    hasher: Executor | None = None  # argon2 runs here, never on the event loop
    clock: Callable[[], datetime] = utc_now


CONTEXT: web.AppKey[ApiContext] = web.AppKey("api_context", ApiContext)
