"""The EMQX stand-in's client routes (`apps/emqx_management/src/emqx_mgmt_api_clients.erl`,
tag 6.2.2, scope `connections`):

- `GET /clients?username=&page=&limit=`: `username` is an array (repeated: the clients of
  any of them), `limit` 1..10000 (`emqx_dashboard_swagger` MAX_ROW_LIMIT), `page` >= 1;
  `{"data": [...], "meta": {"page", "limit", "count", "hasnext"}}`;
- `POST /clients/kickout/bulk` with a JSON array of client ids: 204, each session ended
  as a kick ends it (the broker's `kick`, which publishes the will).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from tests.fakes.emqx_mt import FakeClient, tns_of


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


class ClientRoutes:
    def __init__(self, clients: dict[str, FakeClient], kick: Callable[[str], None]) -> None:
        self._clients = clients  # the broker's live sessions, shared
        self._kick = kick

    def add_routes(self, router: web.UrlDispatcher, prefix: str) -> None:
        router.add_get(prefix + "/clients", self._list_clients)
        router.add_post(prefix + "/clients/kickout/bulk", self._kickout_bulk)

    async def _list_clients(self, request: web.Request) -> web.StreamResponse:
        usernames = set(request.query.getall("username", []))
        try:
            page = int(request.query.get("page", "1"))
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return _error(400, "INVALID_PARAMETER", "page and limit must be integers")
        if page < 1 or not 1 <= limit <= 10000:
            return _error(400, "INVALID_PARAMETER", "page or limit out of range")
        rows = sorted(
            (c for c in self._clients.values() if not usernames or c.username in usernames),
            key=lambda c: c.clientid,
        )
        chunk = rows[(page - 1) * limit : page * limit]
        data = [
            {
                "clientid": c.clientid,
                "username": c.username,
                "connected": True,
                "conn_state": "connected",
                "connected_at": c.connected_at,
                "created_at": c.connected_at,
                "node": "emqx@127.0.0.1",
                "mountpoint": f"{tns_of(c.username)}/",
            }
            for c in chunk
        ]
        meta = {
            "page": page,
            "limit": limit,
            "count": len(rows),
            "hasnext": page * limit < len(rows),
        }
        return web.json_response({"data": data, "meta": meta})

    async def _kickout_bulk(self, request: web.Request) -> web.StreamResponse:
        try:
            ids = await request.json()
        except ValueError:
            ids = None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return _error(400, "BAD_REQUEST", "body must be an array of client ids")
        for clientid in ids:
            self._kick(clientid)
        return web.Response(status=204)
