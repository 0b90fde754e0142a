"""The EMQX stand-in's retainer: one table of retained messages for every tenant, and
the REST routes over it, following emqx/emqx tag 6.2.2:

- `GET /mqtt/retainer/messages?topic=&page=&limit=` (`emqx_retainer_api.erl`
  `lookup_retained/2` → `emqx_retainer_mnesia:page_read/5`): the messages matching the
  filter (all without one), sorted oldest first (`compare_message/2`: by timestamp),
  expired ones left out; `meta` has `page`, `limit`, `hasnext` and, only without a
  topic filter, `count`. `hasnext` is true whenever the page is full, even when nothing
  follows (`emqx_utils_stream:consume/2` returns `{Rows, Rest}` after exactly N);
  `limit` 1..10000 and `page` >= 1 (`emqx_dashboard_swagger` fields(page), fields(limit)).
- `DELETE /mqtt/retainer/message/{topic}` (`with_topic/2`): 404 `NOT_FOUND` when
  `page_read(Topic, 1, 1)` finds nothing, else every match deleted
  (`emqx_retainer_mnesia:delete_message/2`: a wildcard walks all matches) and 204.
- `DELETE /mqtt/retainer/messages` wipes the table (never called by Zero EMQX).

Topic matching is MQTT's (`emqx_topic:match/2`): `+` one level, `#` the rest including
the parent level, and a wildcard never matches a first level starting with `$`.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class Retained:
    topic: str
    timestamp_ms: int
    expires_ms: int = 0  # 0: never
    from_clientid: str = ""
    from_username: str = ""


def topic_matches(topic: str, topic_filter: str) -> bool:
    """`emqx_topic:match/2`, with `$`-topics hidden from a leading wildcard."""
    names, filters = topic.split("/"), topic_filter.split("/")
    if names[0].startswith("$") and filters[0] in ("+", "#"):
        return False
    for index, level in enumerate(filters):
        if level == "#":
            return index == len(filters) - 1
        if index >= len(names):
            return False
        if level not in ("+", names[index]):
            return False
    return len(names) == len(filters)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


class FakeRetainer:
    def __init__(self) -> None:
        self._messages: dict[str, Retained] = {}
        self._clock = itertools.count(int(time.time() * 1000))  # strictly increasing

    # -- broker side ---------------------------------------------------------------------

    def retain(self, topic: str, *, clientid: str = "", username: str = "") -> Retained:
        """A retained PUBLISH to the (mounted) `topic`, replacing the topic's last one."""
        message = Retained(topic, next(self._clock), 0, clientid, username)
        self._messages[topic] = message
        return message

    def topics(self, topic_filter: str = "#") -> list[str]:
        return [m.topic for m in self._sorted() if topic_matches(m.topic, topic_filter)]

    def _sorted(self) -> list[Retained]:
        now = int(time.time() * 1000)
        live = (m for m in self._messages.values() if not m.expires_ms or m.expires_ms >= now)
        return sorted(live, key=lambda m: m.timestamp_ms)

    # -- REST --------------------------------------------------------------------------

    def add_routes(self, router: web.UrlDispatcher, prefix: str) -> None:
        router.add_get(prefix + "/mqtt/retainer/messages", self._list)
        router.add_delete(prefix + "/mqtt/retainer/messages", self._wipe)
        router.add_delete(prefix + "/mqtt/retainer/message/{topic}", self._delete)

    async def _list(self, request: web.Request) -> web.StreamResponse:
        try:
            page = int(request.query.get("page", "1"))
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return _error(400, "BAD_REQUEST", "page and limit must be integers")
        if page < 1 or not 1 <= limit <= 10000:
            return _error(400, "BAD_REQUEST", "page or limit out of range")
        topic_filter = request.query.get("topic")
        rows = [
            m
            for m in self._sorted()
            if topic_filter is None or topic_matches(m.topic, topic_filter)
        ]
        chunk = rows[(page - 1) * limit : page * limit]
        meta: dict[str, object] = {"page": page, "limit": limit, "hasnext": len(chunk) == limit}
        if topic_filter is None:
            meta["count"] = len(self._messages)
        data = [
            {
                "msgid": f"{m.timestamp_ms:032x}",
                "qos": 1,
                "topic": m.topic,
                "publish_at": _rfc3339(m.timestamp_ms),
                "from_clientid": m.from_clientid,
                "from_username": m.from_username,
            }
            for m in chunk
        ]
        return web.json_response({"data": data, "meta": meta})

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        topic_filter = request.match_info["topic"]
        doomed = [m.topic for m in self._sorted() if topic_matches(m.topic, topic_filter)]
        if not doomed:
            return _error(404, "NOT_FOUND", "Viewed message doesn't exist")
        for topic in doomed:
            del self._messages[topic]
        return web.Response(status=204)

    async def _wipe(self, request: web.Request) -> web.StreamResponse:
        self._messages.clear()
        return web.Response(status=204)


def _rfc3339(ms: int) -> str:
    """`emqx_utils_calendar:epoch_to_rfc3339/1`: local time with an offset; UTC here."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}+00:00"
