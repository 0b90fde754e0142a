"""The tenant store on Kubernetes: one Secret per instance (see tenants.secret_format).

The official `kubernetes` client is synchronous; every call runs on a store-owned
thread pool with a deadline, so the event loop never blocks. Responses are read raw
(`_preload_content=False`) and decoded as JSON here: the client's pydantic models
never reach our code, and Secrets stay plain dicts that `secret_format` checks.
urllib3 retries are off (each would restart the deadline; callers retry anyway).

A watch is one streaming request read on its own thread; closing the stream from
the loop shuts the socket's read side down, which wakes the blocked read at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from functools import partial
from typing import Any

import urllib3.exceptions as u3
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tenants.credentials import is_instance_id
from tenants.errors import (
    AlreadyExists,
    Conflict,
    InvalidRecord,
    NotFound,
    StoreError,
    StoreForbidden,
    StoreTimeout,
    StoreUnavailable,
    WatchExpired,
)
from tenants.record import Tenant
from tenants.secret_format import LABEL_SELECTOR, secret_to_tenant, tenant_to_secret
from tenants.store import Change, ChangeType, Listing

log = logging.getLogger(__name__)

Json = dict[str, Any]
_LIST_RESTARTS = 3


def load_api_client(kubeconfig: str | None = None, *, context: str | None = None) -> k8s.ApiClient:
    """An ApiClient from the pod's service account, or else from KUBECONFIG / ~/.kube/config."""
    configuration = k8s.Configuration()
    # kubernetes.config is untyped: the two loaders are the only calls into it.
    load_incluster: Any = k8s_config.load_incluster_config
    load_kubeconfig: Any = k8s_config.load_kube_config
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        load_incluster(client_configuration=configuration)
    else:
        load_kubeconfig(
            config_file=kubeconfig,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    return _api_client(configuration)


def kubernetes_api_client(
    host: str, *, token: str | None = None, ca_cert_file: str | None = None
) -> k8s.ApiClient:
    """An ApiClient for the API server at `host` (a URL): optional bearer token and CA."""
    configuration = k8s.Configuration(host=host, ssl_ca_cert=ca_cert_file)
    if token is not None:
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
    return _api_client(configuration)


def _api_client(configuration: k8s.Configuration) -> k8s.ApiClient:
    # No urllib3 retries: each would restart the deadline, and callers retry anyway.
    configuration.retries = False
    # TCP keepalive as client-go does, so a silently dropped watch is noticed.
    configuration.keep_alive = True
    return k8s.ApiClient(configuration)


class KubernetesStore:
    """TenantStore on Secrets in one namespace. Takes ownership of `api_client`."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        namespace: str,
        *,
        timeout_seconds: float = 10.0,
        page_size: int = 500,
        watch_timeout_seconds: int = 300,
        watch_idle_seconds: float = 150.0,
        max_workers: int = 8,
    ) -> None:
        self.namespace = namespace
        self._client = api_client
        self._api = k8s.CoreV1Api(api_client)
        self._timeout = timeout_seconds
        self._page_size = page_size
        self._watch_timeout = watch_timeout_seconds
        self._watch_idle = watch_idle_seconds
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="kube-store")
        self._streams: set[_WatchStream] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"KubernetesStore(namespace={self.namespace!r})"

    # -- TenantStore ---------------------------------------------------------------

    async def create(self, tenant: Tenant) -> Tenant:
        body = tenant_to_secret(tenant.with_revision(""), self.namespace)
        create, name = self._api.create_namespaced_secret, tenant.instance_id
        try:
            created = await self._call("create", create, self.namespace, body, name=name)
        except NotFound:  # what a create can miss is the namespace itself
            raise StoreError(f"Kubernetes namespace {self.namespace} does not exist") from None
        return tenant.with_revision(_revision_of(created))

    async def get(self, instance_id: str) -> Tenant | None:
        if not is_instance_id(instance_id):
            return None  # no Secret by that name can be a tenant: spare the API the call
        read = self._api.read_namespaced_secret
        try:
            secret = await self._call("get", read, instance_id, self.namespace, name=instance_id)
        except NotFound:
            return None
        return secret_to_tenant(secret)

    async def list(self) -> Listing:
        for _ in range(_LIST_RESTARTS):
            try:
                return await self._list_once()
            except WatchExpired:
                log.info("continue token expired while listing tenant Secrets: listing again")
        raise StoreUnavailable("listing tenant Secrets kept expiring: the API is overloaded")

    async def update(self, tenant: Tenant) -> Tenant:
        if not tenant.revision:
            raise Conflict(f"instance {tenant.instance_id}: update needs the revision it read")
        body = tenant_to_secret(tenant, self.namespace)
        replace = self._api.replace_namespaced_secret
        args = (tenant.instance_id, self.namespace, body)
        replaced = await self._call("update", replace, *args, name=tenant.instance_id)
        return tenant.with_revision(_revision_of(replaced))

    async def delete(self, instance_id: str) -> bool:
        if not is_instance_id(instance_id):
            return False  # never delete a Secret that cannot be one of ours
        remove = self._api.delete_namespaced_secret
        try:
            await self._call("delete", remove, instance_id, self.namespace, name=instance_id)
        except NotFound:
            return False
        return True

    async def watch(self, revision: str) -> AsyncGenerator[Change, None]:
        loop = asyncio.get_running_loop()
        current = revision
        while not self._closed:
            started, changes = loop.time(), 0
            stream = _WatchStream(loop, partial(self._open_watch, current))
            self._streams.add(stream)
            try:
                async for event in stream:
                    kind, obj = _watch_event(event)
                    if kind == "ERROR":
                        raise _status_error(obj, "watch", self.namespace)
                    current = _revision_of(obj) or current
                    if kind in ChangeType.__members__:
                        changes += 1
                        yield self._change(ChangeType(kind), obj, current)
            except Exception as exc:
                if stream.opened and isinstance(exc, (u3.HTTPError, OSError)):
                    # The stream broke (API server restart, idle timeout): pick up where it was.
                    log.info("tenant Secret watch dropped (%s): watching again", type(exc).__name__)
                else:
                    mapped = _map_error(exc, "watch", self.namespace)
                    if mapped is exc:
                        raise
                    raise mapped from None
            finally:
                self._streams.discard(stream)
                await stream.close()
            if changes == 0 and loop.time() - started < 1.0 and not self._closed:
                await asyncio.sleep(1.0)  # an API server that ends watches at once: no spin
        raise StoreUnavailable("the Kubernetes tenant store is closed")

    async def ping(self) -> None:
        list_ = self._api.list_namespaced_secret
        await self._call("list", list_, self.namespace, label_selector=LABEL_SELECTOR, limit=1)

    async def close(self) -> None:
        self._closed = True
        for stream in list(self._streams):
            await stream.close()
        self._executor.shutdown(wait=False)  # calls in flight end by their own deadlines
        self._client.close()  # type: ignore[no-untyped-call]

    async def call_api(
        self, verb: str, method_name: str, *args: Any, name: str | None = None, **kw: Any
    ) -> Json:
        """One CoreV1Api call, by method name, on this store's pool and deadline, its
        failures mapped to StoreErrors: for the other records kept as Secrets beside the
        tenants (tenants.kubernetes_api_keys)."""
        return await self._call(verb, getattr(self._api, method_name), *args, name=name, **kw)

    # -- plumbing ------------------------------------------------------------------

    async def _list_once(self) -> Listing:
        tenants: list[Tenant] = []
        revision, token = "", None
        while True:
            page = await self._call(
                "list",
                self._api.list_namespaced_secret,
                self.namespace,
                label_selector=LABEL_SELECTOR,
                limit=self._page_size,
                _continue=token,
            )
            metadata = page.get("metadata") or {}
            revision = revision or str(metadata.get("resourceVersion", ""))
            for secret in page.get("items") or ():
                try:
                    tenants.append(secret_to_tenant(secret))
                except InvalidRecord as exc:
                    log.warning("skipping unreadable tenant Secret: %s", exc)
            token = metadata.get("continue")
            if not token:
                return Listing(tuple(tenants), revision)

    def _change(self, kind: ChangeType, secret: Json, revision: str) -> Change:
        try:
            tenant: Tenant | None = secret_to_tenant(secret)
        except InvalidRecord as exc:
            tenant = None
            if kind is not ChangeType.DELETED:
                log.warning("tenant Secret became unreadable, treating it as gone: %s", exc)
        name = tenant.instance_id if tenant else str(secret.get("metadata", {}).get("name", ""))
        return Change(kind, name, tenant, revision)

    def _open_watch(self, revision: str) -> Any:
        """The watch response, headers read within the deadline; then idle up to watch_idle."""
        response = self._api.list_namespaced_secret(
            self.namespace,
            label_selector=LABEL_SELECTOR,
            watch=True,
            allow_watch_bookmarks=True,
            resource_version=revision,
            timeout_seconds=self._watch_timeout,
            _preload_content=False,
            _request_timeout=(self._timeout, self._timeout),
        )
        # The body is a stream: a silence longer than the API server's bookmark cadence
        # means the connection is dead (a read timeout there just re-opens the watch).
        connection: Any = getattr(response, "connection", None)
        with suppress(AttributeError, OSError):
            connection.sock.settimeout(self._watch_idle)
        return response

    async def _call(
        self, verb: str, method: Callable[..., Any], *args: Any, name: str | None = None, **kw: Any
    ) -> Json:
        """One API call on the pool, its JSON body decoded; failures become StoreErrors."""

        def run() -> Json:
            response = method(*args, _preload_content=False, _request_timeout=self._timeout, **kw)
            try:
                body = json.loads(response.data)
            finally:
                response.release_conn()
            if not isinstance(body, dict):
                raise StoreUnavailable(f"Kubernetes API answered '{verb}' with a non-object")
            return body

        if self._closed:
            raise StoreUnavailable("the Kubernetes tenant store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, run)
        except Exception as exc:
            mapped = _map_error(exc, verb, self.namespace, name)
            if mapped is exc:
                raise
            raise mapped from None


class _WatchStream:
    """One watch response read line by line on its own thread; events handed to the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, open_stream: Callable[[], Any]) -> None:
        self.opened = False  # set before the first event is handed over
        self._loop = loop
        self._open = open_stream
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._done = loop.create_future()
        self._lock = threading.Lock()
        self._response: Any = None
        self._closing = False
        threading.Thread(target=self._run, name="kube-watch", daemon=True).start()

    def __aiter__(self) -> _WatchStream:
        return self

    async def __anext__(self) -> Any:
        kind, payload = await self._queue.get()
        if kind == "event":
            return payload
        if kind == "error":
            raise payload
        raise StopAsyncIteration

    async def close(self) -> None:
        """Wake the reading thread (socket read side shut down) and wait a moment for it."""
        with self._lock:
            self._closing = True
            response = self._response
            if response is not None:
                with suppress(Exception):
                    response.shutdown()
        self._queue.put_nowait(("end", None))
        await asyncio.wait([self._done], timeout=2.0)

    def _run(self) -> None:
        clean = False
        try:
            response = self._open()
            with self._lock:
                self._response = response
                if self._closing:
                    return
            self.opened = True
            pending = b""
            for chunk in _chunks(response):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in filter(None, (raw.strip() for raw in lines)):
                    self._hand_over("event", json.loads(line))
            clean = True
            self._hand_over("end", None)
        except BaseException as exc:  # handed to the loop, never raised on this thread
            self._hand_over("error", exc)
        finally:
            with self._lock:
                response, self._response = self._response, None
            with suppress(Exception):
                if response is not None and clean:
                    response.release_conn()
                elif response is not None:
                    response.close()
            self._call_soon(self._done.set_result, None)

    def _hand_over(self, kind: str, payload: Any) -> None:
        if not self._closing:
            self._call_soon(self._queue.put_nowait, (kind, payload))

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        with suppress(RuntimeError):  # the loop is closed: nobody is listening any more
            self._loop.call_soon_threadsafe(fn, *args)


def _chunks(response: Any) -> Iterator[bytes]:
    if response.chunked and response.supports_chunked_reads():
        yield from response.read_chunked(decode_content=True)
        return
    while chunk := response.read1(65536):
        yield chunk


def _watch_event(event: Any) -> tuple[str, Json]:
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        raise StoreUnavailable("the Kubernetes API sent a watch event that is not an object")
    return str(event.get("type", "")), event["object"]


def _revision_of(obj: Json) -> str:
    metadata = obj.get("metadata")
    return str(metadata.get("resourceVersion") or "") if isinstance(metadata, dict) else ""


def _map_error(
    exc: BaseException, verb: str, namespace: str, name: str | None = None
) -> BaseException:
    """The StoreError for a client failure; `exc` itself when it is not one we know."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, k8s.ApiException):
        try:
            body = json.loads(exc.body or "")
        except (TypeError, ValueError):
            body = None
        if not isinstance(body, dict) or body.get("kind") != "Status":
            body = {"code": exc.status, "reason": exc.reason}
        body["code"] = exc.status
        return _status_error(body, verb, namespace, name)
    where = f"'{verb}' on secrets in namespace {namespace}"
    if isinstance(exc, u3.MaxRetryError) and exc.reason is not None:
        return _map_error(exc.reason, verb, namespace, name)
    if isinstance(exc, u3.NewConnectionError):
        return StoreUnavailable(f"Kubernetes API unreachable for {where}: connection failed")
    if isinstance(exc, (u3.TimeoutError, TimeoutError)):
        return StoreTimeout(f"Kubernetes API did not answer {where} in time")
    if isinstance(exc, (u3.HTTPError, OSError, json.JSONDecodeError)):
        return StoreUnavailable(f"Kubernetes API failed {where}: {type(exc).__name__}")
    if isinstance(exc, (ValueError, TypeError)):
        # The client's own argument checks (pydantic): their text can quote the Secret.
        return StoreError(f"the kubernetes client refused {where}: {type(exc).__name__}")
    return exc


def _status_error(status: Json, verb: str, namespace: str, name: str | None = None) -> StoreError:
    """The StoreError for a Kubernetes Status (an HTTP error or a watch ERROR event)."""
    code = status.get("code")
    reason = str(status.get("reason") or "")
    message = str(status.get("message") or "")[:300]
    target = f"secret {name!r}" if name else "secrets"
    where = f"'{verb}' on {target} in namespace {namespace}"
    if not code:  # the client's own failure before any answer (TLS, for one)
        return StoreUnavailable(f"Kubernetes API failed {where}: {reason[:200]}")
    if code in (401, 403):
        hint = "grant the verb in the Role" if code == 403 else "check the credentials"
        error = StoreForbidden(f"Kubernetes API refused {where} ({code}): {hint}. {message}")
        log.error("%s", error)
        return error
    if code == 404:
        return NotFound(f"Kubernetes API found no {target} for {where}")
    if code == 409:
        if reason == "AlreadyExists":
            return AlreadyExists(f"{target} already exists in namespace {namespace}")
        return Conflict(f"{target} changed since it was read ({where})")
    if code == 410:
        return WatchExpired(f"{where}: resource version expired ({reason or 'Gone'})")
    if isinstance(code, int) and (code >= 500 or code == 429):
        return StoreUnavailable(f"Kubernetes API failed {where} ({code} {reason})")
    return StoreError(f"Kubernetes API rejected {where} ({code} {reason}): {message}")
