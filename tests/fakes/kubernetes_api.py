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

One module per concept: kubernetes_secrets (the semantics), kubernetes_events
(selectors, watch events), kubernetes_http (routes, middleware, watch streams),
kubernetes_faults (fault injection), kubernetes_status (Status objects); this module
puts them on a port.

Tests drive it through Python methods: fault injection (`fail_next`, `delay_next`,
`forbid`, `compact`, `set_down`) and operator-style writes (`put_secret`, `patch`,
`delete`) that take the same code path as HTTP requests, so watchers see them.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from aiohttp import web

from tenants.kubernetes_api import kubernetes_api_client
from tenants.kubernetes_store import KubernetesStore
from tests.fakes.kubernetes_http import SecretsHttp


class FakeKubernetesApi(SecretsHttp):
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
        super().__init__(
            namespace,
            token=token,
            retain_events=retain_events,
            bookmark_interval=bookmark_interval,
        )
        self._ssl = ssl_context
        self._runner: web.AppRunner | None = None
        self._port = 0

    # -- lifecycle ---------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://127.0.0.1:{self._port}"

    async def start(self) -> None:
        app = self.application()
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
        self.faults.fail_next(n, status, verb=verb)

    def delay_next(self, n: int, seconds: float, *, verb: str | None = None) -> None:
        """The next `n` requests (of `verb`, if given) wait `seconds` before being served."""
        self.faults.delay_next(n, seconds, verb=verb)

    def forbid(self, verb: str) -> None:
        """RBAC: `verb` (get, list, watch, create, update, patch, delete) is refused (403)."""
        self.faults.forbid(verb)

    def allow(self, verb: str) -> None:
        self.faults.allow(verb)


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
