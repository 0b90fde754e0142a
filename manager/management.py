"""The management API's routes (`/api/v1/...`): thin edges over tenants.operations.

Every action is a write to the tenant store, which the ExHook follows exactly as it
follows an operator's `kubectl` edit: pause, resume, rotate and expiry changes update
the record (with its revision, retried on Conflict), and so do creating and deleting a
scoped credential; DELETE deletes it. The list is
served from the manager's tenant index, which follows the store within about a second;
single-instance reads and every change go to the store. Authentication and roles are
the middleware's (manager/auth.py), errors the JSON middleware's (manager/api_errors.py).
"""

from __future__ import annotations

from aiohttp import web

from manager.api_errors import ApiError, not_found
from manager.api_keys import ApiKeyService
from manager.bodies import NO_BODY, read_json
from manager.context import CONTEXT, ApiContext
from manager.instances import BadRequest
from manager.views import (
    CredentialRequest,
    ListQuery,
    api_key_view,
    credential_list,
    credentials_body,
    instance_detail,
    instance_page,
    instance_view,
    new_credential_body,
    new_key_body,
    parse_expiry_body,
    parse_key_request,
)
from tenants.credentials import parse_username
from tenants.errors import NotFound
from tenants.operations import (
    Change,
    CredentialNotFound,
    create_credential,
    modify,
    remove_credential,
    rotate,
    set_expiry,
    set_paused,
)
from tenants.record import Tenant

PREFIX = "/api/v1"
INSTANCE = PREFIX + "/instances/{instance_id}"


def _context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


async def _body(request: web.Request) -> object:
    settings = _context(request).settings
    body = await read_json(request, settings.max_body_bytes, settings.body_timeout_seconds)
    if body is NO_BODY:
        raise BadRequest("a JSON body is required")
    return body


async def _change(request: web.Request, change: Change) -> Tenant:
    try:
        return await modify(_context(request).store, request.match_info["instance_id"], change)
    except NotFound:
        raise not_found("instance") from None


async def list_instances(request: web.Request) -> web.Response:
    ctx = _context(request)
    query = ListQuery.from_query(request.query)
    if not ctx.index.synced:
        raise ApiError(503, "SERVICE_UNAVAILABLE", "the tenant index has not synced yet")
    return web.json_response(instance_page(ctx.index.tenants(), query, ctx.clock()))


async def get_instance(request: web.Request) -> web.Response:
    ctx = _context(request)
    tenant = await ctx.store.get(request.match_info["instance_id"])
    if tenant is None:
        raise not_found("instance")
    usage = await ctx.clients.usage(tenant.instance_id, tenant.usernames())
    return web.json_response(instance_detail(tenant, ctx.clock(), usage, ctx.settings.quotas))


async def delete_instance(request: web.Request) -> web.Response:
    if not await _context(request).store.delete(request.match_info["instance_id"]):
        raise not_found("instance")
    return web.Response(status=204)


async def pause_instance(request: web.Request) -> web.Response:
    now = _context(request).clock()
    return web.json_response(instance_view(await _change(request, set_paused(True, now)), now))


async def resume_instance(request: web.Request) -> web.Response:
    now = _context(request).clock()
    return web.json_response(instance_view(await _change(request, set_paused(False, now)), now))


async def set_instance_expiry(request: web.Request) -> web.Response:
    ctx = _context(request)
    expires_at = parse_expiry_body(await _body(request))
    now = ctx.clock()
    change = set_expiry(expires_at, now, ctx.settings.max_ttl_seconds)
    return web.json_response(instance_view(await _change(request, change), now))


async def rotate_credentials(request: web.Request) -> web.Response:
    ctx = _context(request)
    try:
        tenant, password = await rotate(
            ctx.store, request.match_info["instance_id"], ctx.clock(), hasher=ctx.hasher
        )
    except NotFound:
        raise not_found("instance") from None
    return web.json_response(credentials_body(tenant, password))


async def list_credentials(request: web.Request) -> web.Response:
    tenant = await _context(request).store.get(request.match_info["instance_id"])
    if tenant is None:
        raise not_found("instance")
    return web.json_response(credential_list(tenant))


async def create_scoped_credential(request: web.Request) -> web.Response:
    ctx = _context(request)
    wanted = CredentialRequest.from_json(await _body(request))
    try:
        tenant, credential, password = await create_credential(
            ctx.store,
            request.match_info["instance_id"],
            label=wanted.label,
            allow_publish=wanted.allow_publish,
            allow_subscribe=wanted.allow_subscribe,
            now=ctx.clock(),
            max_credentials=ctx.settings.max_credentials,
            hasher=ctx.hasher,
        )
    except NotFound:
        raise not_found("instance") from None
    return web.json_response(new_credential_body(tenant, credential, password), status=201)


async def delete_scoped_credential(request: web.Request) -> web.Response:
    parsed = parse_username(request.match_info["username"])
    if parsed is None or parsed[1] is None or parsed[0] != request.match_info["instance_id"]:
        raise not_found("credential")
    try:
        await _change(request, remove_credential(parsed[1]))
    except CredentialNotFound:
        raise not_found("credential") from None
    return web.Response(status=204)


def _keys(request: web.Request) -> ApiKeyService:
    keys = _context(request).keys
    assert keys is not None, "management routes are only added with a key service"
    return keys


async def list_api_keys(request: web.Request) -> web.Response:
    return web.json_response({"data": [api_key_view(k) for k in await _keys(request).list()]})


async def create_api_key(request: web.Request) -> web.Response:
    name, role = parse_key_request(await _body(request))
    created = await _keys(request).create(name, role)
    return web.json_response(new_key_body(created), status=201)


async def delete_api_key(request: web.Request) -> web.Response:
    if not await _keys(request).delete(request.match_info["name"]):
        raise not_found("api key")
    return web.Response(status=204)


def add_management_routes(app: web.Application) -> None:
    router = app.router
    router.add_get(PREFIX + "/instances", list_instances)
    router.add_get(INSTANCE, get_instance)
    router.add_delete(INSTANCE, delete_instance)
    router.add_post(INSTANCE + "/pause", pause_instance)
    router.add_post(INSTANCE + "/resume", resume_instance)
    router.add_post(INSTANCE + "/rotate-credentials", rotate_credentials)
    router.add_put(INSTANCE + "/expiry", set_instance_expiry)
    router.add_get(INSTANCE + "/credentials", list_credentials)
    router.add_post(INSTANCE + "/credentials", create_scoped_credential)
    router.add_delete(INSTANCE + "/credentials/{username}", delete_scoped_credential)
    router.add_get(PREFIX + "/api_keys", list_api_keys)
    router.add_post(PREFIX + "/api_keys", create_api_key)
    router.add_delete(PREFIX + "/api_keys/{name}", delete_api_key)
