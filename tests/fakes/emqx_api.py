"""An in-process stand-in for EMQX's REST API (`/api/v5`), for exactly the calls Zero
EMQX makes, following EMQX 6.2.2's contract:

- Basic auth with an API key and secret: a wrong pair is 401 `BAD_API_KEY_OR_SECRET`,
  no header 401 `AUTHORIZATION_HEADER_ERROR`, a key without the path's scope 403
  `UNAUTHORIZED_ROLE` (`apps/emqx_dashboard/src/emqx_dashboard.erl`);
- the namespace routes `/mt/...` (tests/fakes/emqx_mt.py) and the retainer routes
  `/mqtt/retainer/...` (tests/fakes/emqx_retainer.py);
- `GET /clients?username=&page=&limit=` and `POST /clients/kickout/bulk` (204):
  tests/fakes/emqx_clients.py;
- `GET /status` (no auth, as in EMQX);
- the settings routes of tests/fakes/emqx_config_api.py (`config`: our emqx-config/ for
  `version` unless a test changes it), scopes `system` (`emqx_mgmt_api_configs.erl`,
  `emqx_mgmt_api_listeners.erl` `scopes/0`) and `access_control`
  (`emqx_authz_api_settings.erl`, `emqx_authz_api_sources.erl` `scopes/0`).

Test hooks: `connect()` (a client session; its namespace, the first 21 characters of the
username as our `client_attrs_init` says, is auto-created, as EMQX does on
`session.created`), `clients_of()`, `namespaces`, `retainer.retain()`, fault injection
(`fail_next`, `delay_next`, `set_down`, `conflict_for`, `forbid_scope`, `mt_enabled`),
and `calls`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from tests.fakes.emqx_clients import ClientRoutes
from tests.fakes.emqx_config_api import FakeEmqxConfig
from tests.fakes.emqx_mt import FakeClient, FakeNamespaces, tns_of
from tests.fakes.emqx_retainer import FakeRetainer

API = "/api/v5"
_SCOPES = {
    "/mt/": "cluster_operations",
    "/clients": "connections",
    "/mqtt/": "connections",
    "/configs": "system",
    "/listeners": "system",
    "/authorization": "access_control",
}


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # without the /api/v5 prefix
    auth_ok: bool
    query: tuple[tuple[str, str], ...] = ()
    body: Any = None
    raw_path: str = ""  # as sent, percent-encoding kept


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


class FakeEmqxApi:
    def __init__(
        self, key: str, secret: str, *, kick_delay: float = 0.05, version: str = "6.2.2"
    ) -> None:
        self.key = key
        self.config = FakeEmqxConfig.ours(version)
        self.secret = secret
        self.calls: list[Call] = []
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests served at once
        self.mt_enabled = True  # False: a cluster without emqx_mt (/mt routes are 404)
        self._clients: dict[str, FakeClient] = {}
        self.mt = FakeNamespaces(self._clients, self.kick, kick_delay=kick_delay)
        self.retainer = FakeRetainer()
        self._failures: deque[tuple[int, str]] = deque()  # (status, path prefix)
        self._delays: deque[float] = deque()
        self._forbidden_scopes: set[str] = set()
        self._last_connected = datetime.min.replace(tzinfo=UTC)
        self._runner: web.AppRunner | None = None
        self._port = 0

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get(API + "/status", self._status)
        self.mt.add_routes(app.router, API)
        self.retainer.add_routes(app.router, API)
        ClientRoutes(self._clients, self.kick).add_routes(app.router, API)
        self.config.add_routes(app.router, API)
        runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._port)
        await site.start()
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def close(self) -> None:
        await self.stop()
        await self.mt.close()

    async def set_down(self, down: bool) -> None:
        """Down: the REST listener is gone (connections dropped, new ones refused); the
        broker keeps its clients. Up again: same port, same state."""
        if down:
            await self.stop()
        elif self._runner is None:
            await self.start()

    # -- broker state --------------------------------------------------------------------

    def connect(
        self,
        username: str,
        clientid: str,
        *,
        connected_at: datetime | None = None,
        will_topic: str | None = None,
    ) -> FakeClient:
        """A session for `clientid` (replacing any older one); its namespace is
        `substr(username, 0, 21)` (an instance id, also for a scoped credential).
        `will_topic`: a retained will, published (mounted) when the session is kicked."""
        moment = connected_at
        if moment is None:
            moment = max(datetime.now(UTC), self._last_connected + timedelta(microseconds=1))
            self._last_connected = moment
        stamp = moment.isoformat(timespec="microseconds")
        client = FakeClient(clientid, username, stamp, will_topic)
        self._clients[clientid] = client
        self.mt.names.add(tns_of(username))
        return client

    def kick(self, clientid: str) -> None:
        """End a session as a kick does: destroyed at once, its will published, ignoring
        any will delay (`emqx_channel:process_kick/1`, 6.2.2); a retained will lands in the
        retainer under the mountpoint."""
        client = self._clients.pop(clientid, None)
        if client is not None and client.will_topic is not None:
            mounted = f"{tns_of(client.username)}/{client.will_topic}"
            self.retainer.retain(mounted, clientid=clientid, username=client.username)

    def clients_of(self, username: str) -> list[str]:
        return sorted(c.clientid for c in self._clients.values() if c.username == username)

    def client(self, clientid: str) -> FakeClient | None:
        return self._clients.get(clientid)

    @property
    def namespaces(self) -> list[str]:
        return sorted(self.mt.names)

    def add_namespace(self, ns: str) -> None:
        self.mt.names.add(ns)

    # -- fault injection -------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500, *, path: str = "") -> None:
        """The next `n` requests (to paths starting with `path`) answer `status`."""
        self._failures.extend([(status, path)] * n)

    def delay_next(self, n: int, seconds: float) -> None:
        self._delays.extend([seconds] * n)

    def conflict_for(self, seconds: float) -> None:
        """A previous kick "runs" (and kicks nothing) for `seconds`: kick_all_clients is 409
        and a DELETE starts no new kicker meanwhile."""
        self.mt.conflict_for(seconds)

    def kick_running(self, ns: str) -> bool:
        """EMQX's kicker for `ns` still runs (started by DELETE or kick_all_clients)."""
        return self.mt.kick_running(ns)

    def forbid_scope(self, scope: str) -> None:
        self._forbidden_scopes.add(scope)

    def calls_to(self, method: str, path: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path == path]

    # -- HTTP ------------------------------------------------------------------------------

    def _auth_ok(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            key, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return key == self.key and secret == self.secret

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path.removeprefix(API)
        header = request.headers.get("Authorization", "")
        auth_ok = self._auth_ok(header)
        body = None
        if request.can_read_body:
            with suppress(ValueError):
                body = json.loads(await request.text())
        query = tuple(request.query.items())
        raw = request.raw_path.partition("?")[0].removeprefix(API)
        self.calls.append(Call(request.method, path, auth_ok, query, body, raw))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._serve(request, handler, path, header, auth_ok)
        finally:
            self.in_flight -= 1

    async def _serve(
        self, request: web.Request, handler: Any, path: str, header: str, auth_ok: bool
    ) -> web.StreamResponse:
        if self._delays:
            await asyncio.sleep(self._delays.popleft())
        if path == "/status":
            return await handler(request)  # type: ignore[no-any-return]
        if not header:
            return _error(401, "AUTHORIZATION_HEADER_ERROR", "Missing authorization header.")
        if not auth_ok:
            return _error(401, "BAD_API_KEY_OR_SECRET", "Check api_key/api_secret")
        scope = next((s for p, s in _SCOPES.items() if path.startswith(p)), "")
        if scope in self._forbidden_scopes:
            return _error(403, "UNAUTHORIZED_ROLE", f"API key lacks the {scope} scope")
        if self._failures and path.startswith(self._failures[0][1]):
            status, _ = self._failures.popleft()
            return _error(status, "INTERNAL_ERROR", f"injected failure ({status})")
        if path.startswith("/mt/") and not self.mt_enabled:
            return _error(404, "NOT_FOUND", "Request Path Not Found")
        return await handler(request)  # type: ignore[no-any-return]

    async def _status(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="Node emqx@127.0.0.1 is started\nemqx is running")


@asynccontextmanager
async def running_emqx_api(
    key: str = "zero-exhook", secret: str = "s3cret-api-secret", **options: Any
) -> AsyncIterator[FakeEmqxApi]:
    """A started stand-in; stopped (connections dropped, kickers cancelled) on exit."""
    api = FakeEmqxApi(key, secret, **options)
    await api.start()
    try:
        yield api
    finally:
        with suppress(Exception):
            await api.close()
