"""The Kubernetes stand-in's HTTP side: the core/v1 Secrets routes over aiohttp, as the
API server serves them (k8s.io/apiserver pkg/endpoints/handlers): JSON in and out,
errors as Status objects with the HTTP code, merge patches, `?watch=true` as a chunked
stream of JSON lines, optional bearer-token auth (401) and per-verb RBAC (403).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiohttp import web

from tests.fakes.kubernetes_events import Event, Selector, Watcher, bookmark, line, send
from tests.fakes.kubernetes_faults import Faults
from tests.fakes.kubernetes_secrets import SecretsModel
from tests.fakes.kubernetes_status import ApiError, Obj, status_object

_MERGE_PATCH_TYPES = {"application/merge-patch+json", "application/strategic-merge-patch+json"}


@dataclass
class RecordedRequest:
    """What the fake was asked, for tests to assert on."""

    verb: str
    namespace: str
    name: str | None
    query: dict[str, str]


class SecretsHttp(SecretsModel):
    """The model served over HTTP: `application()` is the aiohttp app."""

    def __init__(
        self,
        namespace: str,
        *,
        token: str | None = None,
        retain_events: int = 1000,
        bookmark_interval: float = 1.0,
    ) -> None:
        super().__init__(namespace, retain_events=retain_events)
        self.token = token
        self.faults = Faults()
        self.requests: list[RecordedRequest] = []
        # Called with every request before it is served: a test's hook into the timeline.
        self.on_request: Callable[[RecordedRequest], None] | None = None
        self._bookmark_interval = bookmark_interval

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        base = "/api/v1/namespaces/{namespace}/secrets"
        app.router.add_route("GET", base, self._collection_get)
        app.router.add_post(base, self._create_handler)
        app.router.add_route("GET", base + "/{name}", self._get_handler)
        app.router.add_put(base + "/{name}", self._replace_handler)
        app.router.add_patch(base + "/{name}", self._patch_handler)
        app.router.add_delete(base + "/{name}", self._delete_handler)
        for path, body in _DISCOVERY.items():  # enough for kubectl to find secrets
            app.router.add_get(path, partial(_discovery, body))
        app.router.add_get("/api/v1/namespaces/{namespace}", self._namespace_handler)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        verb = _verb(request)
        info = request.match_info
        recorded = RecordedRequest(
            verb, info.get("namespace", ""), info.get("name"), dict(request.query)
        )
        self.requests.append(recorded)
        if self.on_request is not None:
            self.on_request(recorded)
        delay = self.faults.delay_for(verb)
        if delay is not None:
            await asyncio.sleep(delay)
        try:
            if self.token is not None and request.headers.get("Authorization") != (
                f"Bearer {self.token}"
            ):
                raise ApiError(401, "Unauthorized")
            if self.faults.forbids(verb):
                raise ApiError(
                    403,
                    _forbidden_message(verb, request),
                    name=request.match_info.get("name", ""),
                    kind="secrets",
                )
            failure = self.faults.failure_for(verb)
            if failure is not None:
                raise ApiError(failure, f"injected failure ({failure})")
            response: web.StreamResponse = await handler(request)
            return response
        except ApiError as exc:
            return web.json_response(exc.status, status=exc.code)
        except web.HTTPException as exc:  # no such route: answered the API server's way
            if exc.status == 404:
                message = "the server could not find the requested resource"
            else:
                message = exc.reason
            return web.json_response(status_object(exc.status, message), status=exc.status)

    async def _collection_get(self, request: web.Request) -> web.StreamResponse:
        selector = Selector.parse(request.query.get("labelSelector", ""))
        if request.query.get("watch") in ("1", "true"):
            return await self._watch(request, selector)
        limit = int(request.query.get("limit", "0") or 0)
        body = self.list(
            request.match_info["namespace"], selector, limit, request.query.get("continue", "")
        )
        return web.json_response(body)

    async def _namespace_handler(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["namespace"]
        if name != self.namespace:
            raise ApiError(404, f'namespaces "{name}" not found', name=name, kind="namespaces")
        meta = {"name": name, "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, name))}
        return web.json_response({"kind": "Namespace", "apiVersion": "v1", "metadata": meta})

    async def _create_handler(self, request: web.Request) -> web.StreamResponse:
        obj = self.create(request.match_info["namespace"], await _json_body(request))
        return web.json_response(obj, status=201)

    async def _get_handler(self, request: web.Request) -> web.StreamResponse:
        obj = self._current(request.match_info["namespace"], request.match_info["name"])
        return web.json_response(obj)

    async def _replace_handler(self, request: web.Request) -> web.StreamResponse:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        return web.json_response(self.replace(ns, name, await _json_body(request)))

    async def _patch_handler(self, request: web.Request) -> web.StreamResponse:
        if request.content_type not in _MERGE_PATCH_TYPES:
            raise ApiError(
                415, f"the stand-in accepts only merge patches, not {request.content_type}"
            )
        ns, name = request.match_info["namespace"], request.match_info["name"]
        return web.json_response(self.merge_patch(ns, name, await _json_body(request)))

    async def _delete_handler(self, request: web.Request) -> web.StreamResponse:
        options = await _json_body(request) if request.can_read_body else {}
        ns, name = request.match_info["namespace"], request.match_info["name"]
        return web.json_response(self.remove(ns, name, options.get("preconditions")))

    async def _watch(self, request: web.Request, selector: Selector) -> web.StreamResponse:
        since_text = request.query.get("resourceVersion", "")
        if since_text not in ("", "0") and not since_text.isdigit():
            raise ApiError(400, f"invalid resource version: {since_text}")
        watcher = Watcher(selector, request.query.get("allowWatchBookmarks") in ("1", "true"))
        self._watchers.add(watcher)  # before the replay: nothing can slip in between
        try:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            if since_text in ("", "0"):
                backlog = [Event(self._revision, "ADDED", o, None) for o in self._secrets.values()]
            elif int(since_text) < self._compacted:
                gone = status_object(
                    410, f"too old resource version: {since_text} ({self._compacted})"
                )
                await response.write(line("ERROR", gone))
                return response
            else:
                backlog = [e for e in self._events if e.revision > int(since_text)]
            for event in backlog:
                await send(response, event, selector)
            timeout = float(request.query.get("timeoutSeconds", "1800"))
            await self._stream(response, watcher, asyncio.get_running_loop().time() + timeout)
            return response
        finally:
            self._watchers.discard(watcher)

    async def _stream(self, response: web.StreamResponse, watcher: Watcher, end: float) -> None:
        loop = asyncio.get_running_loop()
        while (left := end - loop.time()) > 0:
            try:
                item = await asyncio.wait_for(
                    watcher.queue.get(), min(left, self._bookmark_interval)
                )
            except TimeoutError:
                item = self._revision if watcher.bookmarks else -1
            if item is None:
                return
            if isinstance(item, Event):
                await send(response, item, watcher.selector)
            elif item >= 0:
                await response.write(line("BOOKMARK", bookmark(item)))
        if watcher.bookmarks:
            await response.write(line("BOOKMARK", bookmark(self._revision)))


def _verb(request: web.Request) -> str:
    if "/secrets" not in request.path:
        return "discover"
    if "name" in request.match_info:
        return {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
            request.method, request.method.lower()
        )
    if request.method == "POST":
        return "create"
    return "watch" if request.query.get("watch") in ("1", "true") else "list"


_SECRETS_RESOURCE = {
    "name": "secrets",
    "singularName": "secret",
    "namespaced": True,
    "kind": "Secret",
    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
}
_DISCOVERY: dict[str, Obj] = {
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [_SECRETS_RESOURCE],
    },
}


async def _discovery(body: Obj, _: web.Request) -> web.StreamResponse:
    return web.json_response(body)


def _forbidden_message(verb: str, request: web.Request) -> str:
    ns = request.match_info.get("namespace", "")
    return (
        f'secrets is forbidden: User "system:serviceaccount:{ns}:zero-emqx" cannot {verb} '
        f'resource "secrets" in API group "" in the namespace "{ns}"'
    )


async def _json_body(request: web.Request) -> Obj:
    # No Content-Type means the first serializer, JSON, as in the API server (the
    # kubernetes 37 Python client sends none with create and replace bodies).
    given = request.headers.get("Content-Type")
    if (
        request.method != "PATCH"
        and given is not None
        and request.content_type != "application/json"
    ):
        raise ApiError(415, f"the stand-in speaks JSON only, not {request.content_type}")
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body is not a JSON object")
    return body
