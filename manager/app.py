"""The manager's HTTP edge: the app, `POST /v1/instances` and health.

`POST /v1/instances` keeps its plain-text error contract, mapped in `error_middleware`;
the JSON routes (management API, self-service, /api-docs) map theirs in
manager/api_errors.py, which sits inside it and answers before it sees them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from manager.api_errors import json_errors
from manager.auth import management_auth
from manager.bodies import NO_BODY, read_json
from manager.callers import CALLERS, Callers, UntrustedForwardingWarner
from manager.connections import ConnectionGuard
from manager.console import add_console_routes
from manager.context import CONTEXT, ApiContext
from manager.instances import BadRequest, Created, CreateRequest, InstanceService, TooManyRequests
from manager.management import add_management_routes
from manager.metrics import METRICS, ManagerMetrics, metrics_route
from manager.openapi import add_openapi_route
from manager.rate_limit import retry_after_header
from manager.readiness import READINESS, Readiness, readyz
from manager.self_service import add_self_service_routes
from manager.settings import ManagerSettings
from manager.skill import add_skill_route
from tenants.errors import (
    StoreError,
    StoreForbidden,
    StoreTimeout,
    StoreUnavailable,
)
from tenants.index import IndexSync
from tenants.record import format_time

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SERVICE: web.AppKey[InstanceService] = web.AppKey("service", InstanceService)
SETTINGS: web.AppKey[ManagerSettings] = web.AppKey("settings", ManagerSettings)
SYNC: web.AppKey[IndexSync] = web.AppKey("sync", IndexSync)


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=message + "\n", headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place where exceptions become statuses. Bodies never echo internals."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status == 413:
            return _text(413, "request body too large")
        if exc.keep_alive is False:  # a body that did not arrive in time (408): close
            closing = _text(exc.status, exc.text or exc.reason)
            closing.force_close()
            return closing
        if exc.status >= 400 and exc.text and not exc.text.endswith("\n"):
            exc.text = exc.text + "\n"
        raise
    except BadRequest as exc:
        return _text(400, str(exc))
    except TooManyRequests as exc:
        return _text(429, str(exc), {"Retry-After": retry_after_header(exc.retry_after)})
    except (TimeoutError, StoreTimeout) as exc:
        log.warning("request deadline passed: %s %s: %s", request.method, request.path, exc)
        return _text(504, "the request deadline passed")
    except StoreUnavailable as exc:
        log.error("tenant store failed: %s", exc)
        return _text(502, "the tenant store is unavailable")
    except StoreForbidden as exc:
        log.error("misconfiguration: %s", exc)
        return _text(500, "internal error")
    except StoreError as exc:
        log.error("tenant store error: %s", exc)
        return _text(500, "internal error")
    except Exception:
        log.exception("unexpected error handling %s %s", request.method, request.path)
        return _text(500, "internal error")


def _created_body(settings: ManagerSettings, created: Created) -> dict[str, Any]:
    tenant = created.tenant
    return {
        "instance_id": tenant.instance_id,
        **settings.endpoints.body(),
        "credentials": {"username": tenant.instance_id, "password": created.password},
        "expires_at": format_time(tenant.expires_at),
    }


async def create_instance(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    async with asyncio.timeout(settings.request_deadline_seconds):
        body = await read_json(request, settings.max_body_bytes, settings.body_timeout_seconds)
        create = CreateRequest() if body is NO_BODY else CreateRequest.from_json(body)
        callers = request.app[CALLERS]
        keys = callers.keys(request)
        created = await request.app[SERVICE].create(create, keys, callers.hash(keys))
    return web.json_response(
        _created_body(settings, created), status=201, headers={"Cache-Control": "no-store"}
    )


async def healthz(request: web.Request) -> web.Response:
    return _text(200, "ok")


def create_app(
    settings: ManagerSettings,
    service: InstanceService,
    sync: IndexSync,
    context: ApiContext,
    *,
    metrics: ManagerMetrics | None = None,
    callers: Callers | None = None,
    guard: ConnectionGuard | None = None,
    readiness: Readiness,
) -> web.Application:
    """The manager app. The caller owns the store, the index sync, the service and the
    context's resources. The management API is there when `context.keys` is set."""
    callers = callers or Callers(settings, UntrustedForwardingWarner())
    middlewares: list[Middleware] = [] if guard is None else [guard.middleware()]
    middlewares += [
        error_middleware,
        json_errors(settings.request_deadline_seconds),
    ]
    if context.keys is not None:
        middlewares.append(management_auth(context.keys, context.failures, callers))
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[CALLERS] = callers
    app[METRICS] = metrics or ManagerMetrics()
    app[SERVICE] = service
    app[SYNC] = sync
    app[CONTEXT] = context
    app.router.add_post("/v1/instances", create_instance)
    app.router.add_get("/healthz", healthz)
    app[READINESS] = readiness
    app.router.add_get("/readyz", readyz)
    add_skill_route(app, settings)
    add_console_routes(app, settings)
    app.router.add_get("/metrics", metrics_route)
    add_self_service_routes(app)
    if context.keys is not None:
        add_management_routes(app)
    add_openapi_route(app)
    return app
