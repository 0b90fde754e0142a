"""Tenant self-service: an instance's own credentials manage that instance only.

`GET /v1/instances/{id}` (state, expiry, connected clients), `DELETE /v1/instances/{id}`
(revoke early) and `POST /v1/instances/{id}/rotate-credentials` (a new password, once),
each authorized by HTTP Basic `instance_id:password`. The record is read from the store
and the password verified against its argon2 hash off the event loop; an unknown id,
an expired instance or another instance's credentials are verified against the decoy
hash, so every refusal costs what a wrong password costs. Failures count against the
per-caller-group limit (429 with Retry-After). Errors are JSON, as on the management API; the
plain-text contract of `POST /v1/instances` is unchanged.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from manager.api_errors import ApiError, unauthorized
from manager.auth import require_basic
from manager.callers import CALLERS
from manager.context import CONTEXT, ApiContext
from manager.views import credentials_body, instance_detail
from tenants.credentials import is_instance_id
from tenants.errors import NotFound
from tenants.hashing import DECOY_HASH, verify_password
from tenants.operations import CredentialsChanged, rotate
from tenants.record import Tenant

INSTANCE = "/v1/instances/{instance_id}"


def _refused() -> ApiError:
    return unauthorized("BAD_USERNAME_OR_PWD", "wrong instance id or password")


async def authenticate_instance(request: web.Request, ctx: ApiContext) -> Tenant:
    """The instance named in the path, when the request carries its credentials."""
    group = request.app[CALLERS].keys(request).group
    ctx.failures.check(group)
    credentials = require_basic(request)
    instance_id = request.match_info["instance_id"]
    tenant = await ctx.store.get(instance_id) if is_instance_id(instance_id) else None
    if tenant is not None and (credentials.user != instance_id or tenant.is_expired(ctx.clock())):
        tenant = None
    stored = tenant.password_hash if tenant is not None else DECOY_HASH
    loop = asyncio.get_running_loop()
    matched = await loop.run_in_executor(ctx.hasher, verify_password, stored, credentials.secret)
    if tenant is None or not matched:
        ctx.failures.failed(group)
        raise _refused()
    return tenant


async def get_own_instance(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    tenant = await authenticate_instance(request, ctx)
    usage = await ctx.clients.usage(tenant.instance_id, tenant.usernames())
    return web.json_response(instance_detail(tenant, ctx.clock(), usage, ctx.settings.quotas))


async def delete_own_instance(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    tenant = await authenticate_instance(request, ctx)
    await ctx.store.delete(tenant.instance_id)
    return web.Response(status=204)


async def rotate_own_credentials(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    tenant = await authenticate_instance(request, ctx)
    try:
        rotated, password = await rotate(
            ctx.store,
            tenant.instance_id,
            ctx.clock(),
            hasher=ctx.hasher,
            expected=tenant.password_hash,
        )
    except (CredentialsChanged, NotFound):
        raise _refused() from None  # rotated or deleted meanwhile: these credentials are stale
    return web.json_response(credentials_body(rotated, password))


def add_self_service_routes(app: web.Application) -> None:
    app.router.add_get(INSTANCE, get_own_instance)
    app.router.add_delete(INSTANCE, delete_own_instance)
    app.router.add_post(INSTANCE + "/rotate-credentials", rotate_own_credentials)
