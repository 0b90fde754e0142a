"""An in-process stand-in for the Kubernetes API server, for Secrets.

It serves, over real HTTP on 127.0.0.1, exactly the part of the core/v1 API the
Kubernetes tenant store uses, following the API server's conventions:

- `GET|POST /api/v1/namespaces/{ns}/secrets` and `GET|PUT|PATCH|DELETE .../secrets/{name}`;
- one global, monotonically increasing resourceVersion; `uid`, `creationTimestamp`;
  no-op writes do not bump it; PUT with a stale resourceVersion is a 409 Conflict;
- list with `labelSelector`, `limit` and opaque `continue` tokens served from the
  snapshot of the first page (expired by `compact()` with 410 Expired);
- `?watch=true` as chunked JSON lines, replaying retained events after
  `resourceVersion` (410 ERROR event when it is older than the retained window),
  selector transitions as ADDED/DELETED like the watch cache, BOOKMARK events when asked;
- errors as `Status` objects, optional bearer-token auth (401) and per-verb RBAC (403).

Tests drive it through Python methods: fault injection (`fail_next`, `delay_next`,
`forbid`, `compact`, `set_down`) and operator-style writes (`put_secret`, `patch`,
`delete`) that take the same code path as HTTP requests, so watchers see them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import re
import ssl
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from aiohttp import web

from tenants.kubernetes_api import kubernetes_api_client
from tenants.kubernetes_store import KubernetesStore

Obj = dict[str, Any]

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_DATA_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_MERGE_PATCH_TYPES = {"application/merge-patch+json", "application/strategic-merge-patch+json"}
_IMMUTABLE_META = ("name", "namespace", "uid", "creationTimestamp")


def status_object(code: int, message: str, reason: str | None = None, **details: Any) -> Obj:
    """A `Status` object shaped like the API server's."""
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details:
        body["details"] = details
    return body


class ApiError(Exception):
    """An API failure, carried to the HTTP layer as a Status object."""

    def __init__(self, code: int, message: str, reason: str | None = None, **details: Any):
        super().__init__(message)
        self.code = code
        self.status = status_object(code, message, reason, **details)


def _not_found(name: str) -> ApiError:
    return ApiError(404, f'secrets "{name}" not found', name=name, kind="secrets")


def _invalid(name: str, path: str, message: str) -> ApiError:
    cause = {"reason": "FieldValueInvalid", "message": message, "field": path}
    return ApiError(
        422,
        f'Secret "{name}" is invalid: {path}: {message}',
        name=name,
        kind="Secret",
        causes=[cause],
    )


@dataclass(frozen=True)
class Selector:
    """A label selector: `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-joined (all must hold)."""

    requirements: tuple[tuple[str, str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Selector:
        found: list[tuple[str, str, str]] = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            if "!=" in part:
                key, value = part.split("!=", 1)
                found.append(("!=", key.strip(), value.strip()))
            elif "=" in part:
                key, value = part.replace("==", "=", 1).split("=", 1)
                found.append(("=", key.strip(), value.strip()))
            elif part.startswith("!"):
                found.append(("!", part[1:].strip(), ""))
            else:
                found.append(("exists", part, ""))
        return cls(tuple(found))

    def matches(self, obj: Mapping[str, Any] | None) -> bool:
        if obj is None:
            return False
        labels = obj.get("metadata", {}).get("labels") or {}
        for op, key, value in self.requirements:
            ok = {
                "=": labels.get(key) == value,
                "!=": labels.get(key) != value,
                "exists": key in labels,
                "!": key not in labels,
            }[op]
            if not ok:
                return False
        return True


@dataclass(frozen=True)
class Event:
    """One committed change. `previous` is the object before it (None for a creation)."""

    revision: int
    type: str  # ADDED | MODIFIED | DELETED
    object: Obj
    previous: Obj | None


@dataclass
class RecordedRequest:
    """What the fake was asked, for tests to assert on."""

    verb: str
    namespace: str
    name: str | None
    query: dict[str, str]


@dataclass(eq=False)
class _Watcher:
    selector: Selector
    bookmarks: bool
    queue: asyncio.Queue[Event | int | None] = field(default_factory=asyncio.Queue)


class FakeKubernetesApi:
    """The Secrets of one namespace, served by aiohttp on 127.0.0.1."""

    def __init__(
        self,
        namespace: str = "zero",
        *,
        token: str | None = None,
        retain_events: int = 1000,
        bookmark_interval: float = 1.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.namespace = namespace
        self._ssl = ssl_context
        self.token = token
        self.requests: list[RecordedRequest] = []
        # Called with every request before it is served: a test's hook into the timeline.
        self.on_request: Callable[[RecordedRequest], None] | None = None
        self._retain = retain_events
        self._bookmark_interval = bookmark_interval
        self._secrets: dict[str, Obj] = {}
        self._revision = 1
        self._events: deque[Event] = deque()
        self._compacted = 1  # a watch from a revision older than this gets 410
        self._snapshots: dict[int, list[Obj]] = {}
        self._watchers: set[_Watcher] = set()
        self._failures: deque[tuple[int, str | None]] = deque()
        self._delays: deque[tuple[float, str | None]] = deque()
        self._forbidden: set[str] = set()
        self._runner: web.AppRunner | None = None
        self._port = 0

    # -- lifecycle ---------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://127.0.0.1:{self._port}"

    @property
    def resource_version(self) -> str:
        return str(self._revision)

    async def start(self) -> None:
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
        runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._port, ssl_context=self._ssl)
        await site.start()
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening and drop every connection, watches included."""
        self.end_watches()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def set_down(self, down: bool) -> None:
        """Down: connections are dropped and refused. Up again: same port, same state."""
        if down:
            await self.stop()
        elif self._runner is None:
            await self.start()

    # -- fault injection -----------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500, *, verb: str | None = None) -> None:
        """The next `n` requests (of `verb`, if given) answer with a `status` Status."""
        self._failures.extend([(status, verb)] * n)

    def delay_next(self, n: int, seconds: float, *, verb: str | None = None) -> None:
        """The next `n` requests (of `verb`, if given) wait `seconds` before being served."""
        self._delays.extend([(seconds, verb)] * n)

    def forbid(self, verb: str) -> None:
        """RBAC: `verb` (get, list, watch, create, update, patch, delete) is refused (403)."""
        self._forbidden.add(verb)

    def allow(self, verb: str) -> None:
        self._forbidden.discard(verb)

    def compact(self) -> None:
        """Forget the event history and list snapshots, as etcd compaction does."""
        self._events.clear()
        self._snapshots.clear()
        self._compacted = self._revision

    @property
    def watching(self) -> int:
        """How many watch streams are open."""
        return len(self._watchers)

    def end_watches(self) -> None:
        """End every watch stream cleanly, as the server does when timeoutSeconds is up."""
        for watcher in self._watchers:
            watcher.queue.put_nowait(None)

    def send_bookmarks(self) -> None:
        """Every watcher that asked for bookmarks gets one at the current revision."""
        for watcher in self._watchers:
            if watcher.bookmarks:
                watcher.queue.put_nowait(self._revision)

    # -- operator-style writes (the same code paths as HTTP) ------------------------

    def put_secret(self, manifest: Mapping[str, Any]) -> Obj:
        """Create or unconditionally replace a Secret, as `kubectl apply` would."""
        body = copy.deepcopy(dict(manifest))
        body.setdefault("metadata", {}).pop("resourceVersion", None)
        name = str(body["metadata"].get("name", ""))
        if name in self._secrets:
            return self.replace(self.namespace, name, body)
        return self.create(self.namespace, body)

    def patch(self, name: str, patch: Mapping[str, Any]) -> Obj:
        """A JSON merge patch, as `kubectl annotate` / `kubectl label` send."""
        return self.merge_patch(self.namespace, name, patch)

    def delete(self, name: str) -> bool:
        try:
            self.remove(self.namespace, name, None)
        except ApiError:
            return False
        return True

    def secret(self, name: str) -> Obj | None:
        found = self._secrets.get(name)
        return copy.deepcopy(found) if found is not None else None

    # -- the API's semantics ----------------------------------------------------------

    def create(self, namespace: str, body: Obj) -> Obj:
        if namespace != self.namespace:
            raise ApiError(
                404, f'namespaces "{namespace}" not found', name=namespace, kind="namespaces"
            )
        meta = body.get("metadata") or {}
        if meta.get("resourceVersion"):
            raise ApiError(400, "resourceVersion should not be set on objects to be created")
        obj = self._validated(namespace, body)
        name = obj["metadata"]["name"]
        if name in self._secrets:
            raise ApiError(
                409, f'secrets "{name}" already exists', "AlreadyExists", name=name, kind="secrets"
            )
        obj["metadata"]["uid"] = str(uuid.uuid4())
        obj["metadata"]["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._commit("ADDED", obj, None)

    def replace(self, namespace: str, name: str, body: Obj) -> Obj:
        current = self._current(namespace, name)
        meta = body.get("metadata") or {}
        if meta.get("name", name) != name:
            raise ApiError(400, "the name of the object does not match the name on the URL")
        wanted = meta.get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                f'Operation cannot be fulfilled on secrets "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
                name=name,
                kind="secrets",
            )
        obj = self._validated(namespace, body)
        for key in _IMMUTABLE_META:
            if key in current["metadata"]:
                obj["metadata"][key] = current["metadata"][key]
        if obj.get("type") != current.get("type"):
            raise _invalid(name, "type", "field is immutable")
        return self._commit("MODIFIED", obj, current)

    def merge_patch(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Obj:
        current = self._current(namespace, name)
        merged = _merge(current, patch)
        merged["metadata"].setdefault("resourceVersion", current["metadata"]["resourceVersion"])
        for key in ("name", "namespace", "uid"):
            if merged["metadata"].get(key) != current["metadata"].get(key):
                raise _invalid(name, f"metadata.{key}", "field is immutable")
        return self.replace(namespace, name, merged)

    def remove(self, namespace: str, name: str, preconditions: Mapping[str, Any] | None) -> Obj:
        current = self._current(namespace, name)
        wanted = (preconditions or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                f'Operation cannot be fulfilled on secrets "{name}": '
                "the ResourceVersion in the precondition does not match",
                name=name,
                kind="secrets",
            )
        self._commit("DELETED", copy.deepcopy(current), current)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "kind": "secrets", "uid": current["metadata"]["uid"]},
        }

    def list(self, namespace: str, selector: Selector, limit: int, token: str) -> Obj:
        if token:
            revision, start = _decode_continue(token)
            snapshot = self._snapshots.get(revision)
            if snapshot is None:
                raise ApiError(
                    410,
                    "The provided continue parameter is too old to display a "
                    "consistent list result. You can start a new list without "
                    "the continue parameter.",
                    "Expired",
                )
        else:
            revision, start = self._revision, ""
            snapshot = [self._secrets[name] for name in sorted(self._secrets)]
            if namespace != self.namespace:
                snapshot = []
        matching = [o for o in snapshot if o["metadata"]["name"] > start and selector.matches(o)]
        page = matching[:limit] if limit > 0 else matching
        metadata: Obj = {"resourceVersion": str(revision)}
        if len(page) < len(matching):
            self._snapshots[revision] = snapshot
            metadata["continue"] = _encode_continue(revision, page[-1]["metadata"]["name"])
            metadata["remainingItemCount"] = len(matching) - len(page)
        items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in page]
        return {"kind": "SecretList", "apiVersion": "v1", "metadata": metadata, "items": items}

    def _current(self, namespace: str, name: str) -> Obj:
        found = self._secrets.get(name) if namespace == self.namespace else None
        if found is None:
            raise _not_found(name)
        return found

    def _validated(self, namespace: str, body: Obj) -> Obj:
        """A stored copy of `body`: checked like the API server does, defaults filled in."""
        obj = copy.deepcopy(body)
        if obj.get("kind", "Secret") != "Secret" or obj.get("apiVersion", "v1") != "v1":
            raise ApiError(400, "the body is not a v1 Secret")
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if meta.setdefault("namespace", namespace) != namespace:
            raise ApiError(
                400,
                "the namespace of the provided object does not match the "
                "namespace sent on the request",
            )
        if not isinstance(name, str) or not name:
            raise _invalid("", "metadata.name", "Required value: name or generateName is required")
        if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
            raise _invalid(
                name,
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC '
                "1123 subdomain must consist of lower case alphanumeric characters, "
                "'-' or '.', and must start and end with an alphanumeric character",
            )
        for kind in ("labels", "annotations"):
            values = meta.get(kind) or {}
            if not isinstance(values, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in values.items()
            ):
                raise ApiError(400, f"metadata.{kind} must map strings to strings")
        for key, value in (meta.get("labels") or {}).items():
            if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
                raise _invalid(name, f"metadata.labels[{key}]", "Invalid value: not a label value")
        data = obj.get("data") or {}
        for key, value in (obj.pop("stringData", None) or {}).items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        for key, value in data.items():
            if not _DATA_KEY.fullmatch(key):
                raise _invalid(name, f"data[{key}]", "Invalid value: not a valid config key")
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise ApiError(400, f"illegal base64 data in data[{key}]") from None
        if data:
            obj["data"] = data
        else:
            obj.pop("data", None)  # empty maps are omitted, as in the API server's JSON
        obj.setdefault("type", "Opaque")
        obj["kind"], obj["apiVersion"] = "Secret", "v1"
        return obj

    def _commit(self, kind: str, obj: Obj, previous: Obj | None) -> Obj:
        name = obj["metadata"]["name"]
        if kind == "MODIFIED" and previous is not None and _same(obj, previous):
            return copy.deepcopy(previous)  # a no-op write changes nothing, not even the RV
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        if kind == "DELETED":
            del self._secrets[name]
        else:
            self._secrets[name] = obj
        event = Event(self._revision, kind, obj, previous)
        self._events.append(event)
        while len(self._events) > self._retain:
            self._compacted = self._events.popleft().revision
        for watcher in self._watchers:
            watcher.queue.put_nowait(event)
        return copy.deepcopy(obj)

    # -- HTTP -----------------------------------------------------------------------

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
        delay = _take(self._delays, verb)
        if delay is not None:
            await asyncio.sleep(delay)
        try:
            if self.token is not None and request.headers.get("Authorization") != (
                f"Bearer {self.token}"
            ):
                raise ApiError(401, "Unauthorized")
            if verb in self._forbidden:
                raise ApiError(
                    403,
                    _forbidden_message(verb, request),
                    name=request.match_info.get("name", ""),
                    kind="secrets",
                )
            failure = _take(self._failures, verb)
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
        watcher = _Watcher(selector, request.query.get("allowWatchBookmarks") in ("1", "true"))
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
                await response.write(_line("ERROR", gone))
                return response
            else:
                backlog = [e for e in self._events if e.revision > int(since_text)]
            for event in backlog:
                await _send(response, event, selector)
            timeout = float(request.query.get("timeoutSeconds", "1800"))
            await self._stream(response, watcher, asyncio.get_running_loop().time() + timeout)
            return response
        finally:
            self._watchers.discard(watcher)

    async def _stream(self, response: web.StreamResponse, watcher: _Watcher, end: float) -> None:
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
                await _send(response, item, watcher.selector)
            elif item >= 0:
                await response.write(_line("BOOKMARK", _bookmark(item)))
        if watcher.bookmarks:
            await response.write(_line("BOOKMARK", _bookmark(self._revision)))


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


def _take(queue: deque[tuple[Any, str | None]], verb: str) -> Any:
    """Pop the first entry meant for `verb` (or for any verb); None when there is none."""
    for index, (value, wanted) in enumerate(queue):
        if wanted is None or wanted == verb:
            del queue[index]
            return value
    return None


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


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(copy.deepcopy(target)) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _same(a: Obj, b: Obj) -> bool:
    def strip(o: Obj) -> Obj:
        return {**o, "metadata": {k: v for k, v in o["metadata"].items() if k != "resourceVersion"}}

    return strip(a) == strip(b)


def _encode_continue(revision: int, start: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": start + "\x00"})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(raw["rv"]), str(raw["start"]).rstrip("\x00")
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ApiError(400, "continue key is not valid") from None


def _bookmark(revision: int) -> Obj:
    return {
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": str(revision), "creationTimestamp": None},
    }


def _line(kind: str, obj: Obj) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


async def _send(response: web.StreamResponse, event: Event, selector: Selector) -> None:
    """Write `event` as this watcher sees it: selector transitions become ADDED/DELETED."""
    now, before = selector.matches(event.object), selector.matches(event.previous)
    if event.type == "DELETED":
        kind = "DELETED" if before else None
        obj = event.object
    elif now:
        kind = "MODIFIED" if before else "ADDED"
        obj = event.object
    elif before:  # it left the selection: the previous state, at this event's revision
        kind = "DELETED"
        obj = copy.deepcopy(event.previous or {})
        obj["metadata"]["resourceVersion"] = str(event.revision)
    else:
        kind = None
    if kind is not None:
        await response.write(_line(kind, obj))


@asynccontextmanager
async def running_kubernetes_api(
    namespace: str = "zero", *, token: str | None = None, **options: Any
) -> AsyncIterator[FakeKubernetesApi]:
    """A started stand-in; stopped (connections dropped) on exit."""
    api = FakeKubernetesApi(namespace, token=token, **options)
    await api.start()
    try:
        yield api
    finally:
        with suppress(Exception):
            await api.stop()


def store_for(api: FakeKubernetesApi, **options: Any) -> KubernetesStore:
    """A KubernetesStore talking to `api` through the real kubernetes client."""
    client = kubernetes_api_client(api.url, token=api.token)
    return KubernetesStore(client, api.namespace, **options)
