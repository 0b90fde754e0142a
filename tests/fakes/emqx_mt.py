"""The EMQX stand-in's namespaces (`emqx_mt`), following emqx/emqx tag 6.2.2
(`apps/emqx_mt/src/emqx_mt_api.erl`):

- a namespace is created on a client's `session.created` (auto-created, "unmanaged":
  `emqx_mt_hookcb`); its name is the client's `tns` attribute, the first 21 characters
  of the username as our `client_attrs_init` says;
- `GET /mt/ns_list?last_ns=&first_ns=&limit=`: sorted names, `last_ns` exclusive, a
  `link` header when there is a next page; both cursors at once is 400;
- `DELETE /mt/ns/{ns}`: 204 whether or not the namespace exists; starts the namespace's
  kicker unless one runs already (`emqx_mt_config:delete_managed_ns/1`);
- `POST /mt/ns/{ns}/kick_all_clients`: 202, 409 while a kick runs, 404 unknown namespace;
  the kicker ends whoever is in the namespace when it runs, after `kick_delay`
  (`emqx_mt_client_kicker:handle_kick/1` lists the live index at each batch);
- `GET /mt/ns/{ns}/client_count`: `{"count": N}`, 404 unknown namespace;
- `GET /mt/ns/{ns}/metrics` (6.1.0+; absent from 6.0.x): `with_known_ns/2` (404
  "Namespace not found"), then `{"messaging_stats": {"messages.received", ...},
  "session_count", "builtin_authz_record_count", "builtin_authn_record_count"}`
  (`handle_get_metrics/1`); `metrics_enabled = False` models a 6.0 cluster (404 path).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web


@dataclass(frozen=True)
class FakeClient:
    clientid: str
    username: str
    connected_at: str
    will_topic: str | None = None  # a retained will (un-mounted topic), published on a kick


def tns_of(username: str) -> str:
    """`mqtt.client_attrs_init = [{expression = "substr(username, 0, 21)", ...}]`."""
    return username[:21]


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


class FakeNamespaces:
    def __init__(
        self, clients: dict[str, FakeClient], kick: Callable[[str], None], *, kick_delay: float
    ) -> None:
        self._clients = clients  # the broker's live sessions, shared
        self._kick = kick  # ends one session the way the broker does (its will published)
        self.kick_delay = kick_delay
        self.names: set[str] = set()
        self.metrics_enabled = True  # False: EMQX 6.0.x, no /mt/ns/{ns}/metrics route
        self.messaging_stats: dict[str, dict[str, int]] = {}  # ns -> counters (tests set them)
        self._kickers: dict[str, asyncio.Task[None]] = {}
        self._conflict_until = 0.0

    def add_routes(self, router: web.UrlDispatcher, prefix: str) -> None:
        router.add_get(prefix + "/mt/ns_list", self._ns_list)
        router.add_delete(prefix + "/mt/ns/{ns}", self._delete_ns)
        router.add_post(prefix + "/mt/ns/{ns}/kick_all_clients", self._kick_all)
        router.add_get(prefix + "/mt/ns/{ns}/client_count", self._client_count)
        router.add_get(prefix + "/mt/ns/{ns}/metrics", self._metrics)

    async def close(self) -> None:
        kickers = list(self._kickers.values())
        for task in kickers:
            task.cancel()
        for task in kickers:
            with suppress(asyncio.CancelledError):
                await task
        self._kickers.clear()

    # -- kicking ---------------------------------------------------------------------------

    def conflict_for(self, seconds: float) -> None:
        self._conflict_until = asyncio.get_running_loop().time() + seconds

    def kick_running(self, ns: str) -> bool:
        return ns in self._kickers and not self._kickers[ns].done()

    def _kicking(self, ns: str) -> bool:
        return self.kick_running(ns) or asyncio.get_running_loop().time() < self._conflict_until

    def _start_kicker(self, ns: str) -> bool:
        if self._kicking(ns):
            return False
        self._kickers[ns] = asyncio.create_task(self._kick_later(ns), name=f"fake-kicker-{ns}")
        return True

    async def _kick_later(self, ns: str) -> None:
        await asyncio.sleep(self.kick_delay)
        for client in self._in(ns):
            self._kick(client.clientid)

    def _in(self, ns: str) -> list[FakeClient]:
        return [c for c in self._clients.values() if tns_of(c.username) == ns]

    # -- routes ----------------------------------------------------------------------------

    async def _ns_list(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        if "last_ns" in query and "first_ns" in query:
            return _error(400, "BAD_REQUEST", "`last_ns` and `first_ns` are mutually exclusive")
        try:
            limit = int(query.get("limit", "100"))
        except ValueError:
            limit = 0
        if limit < 1:
            return _error(400, "BAD_REQUEST", "limit must be a positive integer")
        names = sorted(self.names)
        if "first_ns" in query:
            start, key = bisect.bisect_left(names, query["first_ns"]), "first_ns"
        else:
            start, key = bisect.bisect_right(names, query.get("last_ns", "")), "last_ns"
        items = names[start : start + limit + 1]
        if len(items) <= limit:
            return web.json_response(items)
        page = items[:limit]
        cursor = page[-1] if key == "last_ns" else items[limit]
        link = f'<?{urlencode({key: cursor, "limit": limit})}>; rel="next"'
        return web.json_response(page, headers={"link": link})

    async def _delete_ns(self, request: web.Request) -> web.StreamResponse:
        ns = request.match_info["ns"]
        self.names.discard(ns)
        self.messaging_stats.pop(ns, None)
        self._start_kicker(ns)  # `_ = emqx_mt_client_kicker:start_kicking(Ns)`: result ignored
        return web.Response(status=204)

    async def _kick_all(self, request: web.Request) -> web.StreamResponse:
        ns = request.match_info["ns"]
        if ns not in self.names:
            return _error(404, "NOT_FOUND", "Namespace not found")
        if not self._start_kicker(ns):
            return _error(409, "CONFLICT", "Kick process already underway")
        return web.Response(status=202)

    async def _client_count(self, request: web.Request) -> web.StreamResponse:
        ns = request.match_info["ns"]
        if ns not in self.names:
            return _error(404, "NOT_FOUND", "Namespace not found")
        return web.json_response({"count": len(self._in(ns))})

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        if not self.metrics_enabled:
            return _error(404, "NOT_FOUND", "Request Path Not Found")
        ns = request.match_info["ns"]
        if ns not in self.names:
            return _error(404, "NOT_FOUND", "Namespace not found")
        stats = {
            "messages.received": 0,
            "messages.sent": 0,
            "messages.dropped": 0,
            "bytes.received": 0,
            "bytes.sent": 0,
            **self.messaging_stats.get(ns, {}),
        }
        body = {
            "messaging_stats": stats,
            "session_count": len(self._in(ns)),
            "builtin_authz_record_count": 0,
            "builtin_authn_record_count": 0,
        }
        return web.json_response(body)
