"""The tenant store on Kubernetes: one Secret per instance (see tenants.secret_format).

The official `kubernetes` client is synchronous; every call runs on a store-owned
thread pool with a deadline, so the event loop never blocks. Responses are read raw
(`_preload_content=False`) and decoded as JSON here: the client's pydantic models
never reach our code, and Secrets stay plain dicts that `secret_format` checks.
urllib3 retries are off (each would restart the deadline; callers retry anyway).

A watch is one streaming request read on its own thread (tenants.kubernetes_watch);
client construction and the mapping of API failures to store errors live in
tenants.kubernetes_api.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from functools import partial
from typing import Any

import urllib3.exceptions as u3
from kubernetes import client as k8s

from tenants.credentials import is_instance_id
from tenants.errors import (
    Conflict,
    InvalidRecord,
    NotFound,
    StoreError,
    StoreUnavailable,
    WatchExpired,
)
from tenants.kubernetes_api import Json, map_error, status_error
from tenants.kubernetes_watch import WatchStream, watch_event
from tenants.record import Tenant
from tenants.secret_format import LABEL_SELECTOR, secret_to_tenant, tenant_to_secret
from tenants.store import Change, ChangeType, Listing, Unreadable

log = logging.getLogger(__name__)

_LIST_RESTARTS = 3


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
        self._streams: set[WatchStream] = set()
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
        try:
            return secret_to_tenant(secret)
        except InvalidRecord as exc:  # unreadable is gone (the index logs and counts it)
            log.debug("tenant Secret unreadable, treated as absent: %s", exc)
            return None

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
            stream = WatchStream(loop, partial(self._open_watch, current))
            self._streams.add(stream)
            try:
                async for event in stream:
                    kind, obj = watch_event(event)
                    if kind == "ERROR":
                        raise status_error(obj, "watch", self.namespace)
                    current = _revision_of(obj) or current
                    if kind in ChangeType.__members__:
                        changes += 1
                        yield self._change(ChangeType(kind), obj, current)
            except Exception as exc:
                if stream.opened and isinstance(exc, (u3.HTTPError, OSError)):
                    # The stream broke (API server restart, idle timeout): pick up where it was.
                    log.info("tenant Secret watch dropped (%s): watching again", type(exc).__name__)
                else:
                    mapped = map_error(exc, "watch", self.namespace)
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
        unreadable: list[Unreadable] = []
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
                    unreadable.append(Unreadable(_name_of(secret), str(exc)))
            token = metadata.get("continue")
            if not token:
                return Listing(tuple(tenants), revision, tuple(unreadable))

    def _change(self, kind: ChangeType, secret: Json, revision: str) -> Change:
        name = _name_of(secret)
        try:
            tenant = secret_to_tenant(secret)
        except InvalidRecord as exc:
            reason = "" if kind is ChangeType.DELETED else str(exc)
            return Change(kind, name, None, revision, unreadable=reason)
        return Change(kind, tenant.instance_id, tenant, revision)

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
            mapped = map_error(exc, verb, self.namespace, name)
            if mapped is exc:
                raise
            raise mapped from None


def _name_of(secret: object) -> str:
    metadata = secret.get("metadata") if isinstance(secret, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) else ""


def _revision_of(obj: Json) -> str:
    metadata = obj.get("metadata")
    return str(metadata.get("resourceVersion") or "") if isinstance(metadata, dict) else ""
