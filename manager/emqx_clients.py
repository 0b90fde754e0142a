"""What EMQX's REST API says about an instance's use (emqx/emqx tag 6.2.2):

- `GET /api/v5/clients?username=<instance id>&username=<scoped username>...&limit=1`
  answers `meta.count`: the clients of the instance id and of its scoped credentials
  (`emqx_mgmt_api_clients.erl`, scope `connections`);
- `GET /api/v5/mqtt/retainer/messages?topic=<id>/#&page=&limit=` lists the instance's
  retained messages (`emqx_retainer_api.erl` `lookup_retained/2`, scope `connections`;
  no count with a topic filter, so the pages are counted);
- `GET /api/v5/mt/ns/<id>/metrics` gives the namespace's `messaging_stats`
  (`emqx_mt_api.erl` `handle_get_metrics/1`, scope `cluster_operations`): EMQX 6.1.0 and
  later only (absent from 6.0.x), 404 "Namespace not found" before the first session.

All of it is decoration: without EMQX_API_URL, or when EMQX is slow, down, refuses the
key or answers something unexpected, a value is None (shown as null) and the answer says
EMQX was not reachable, never an error. The manager asks with the same EMQX_API_URL /
EMQX_API_KEY / EMQX_API_SECRET as the ExHook, and waits at most EMQX_API_TIMEOUT_SECONDS,
capped at half the request deadline; the three reads of a usage answer run at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import httpx

from tenants.settings import EmqxApiSettings

log = logging.getLogger(__name__)

RETAINED_PAGE_SIZE = 1000
MAX_RETAINED_PAGES = 10  # counts up to 10,000 (the per-instance quota is far below)
# EMQX's namespace counters shown, by their EMQX names (emqx_metrics, namespaced).
COUNTERS = {
    "messages.received": "messages_received",
    "messages.sent": "messages_sent",
    "messages.dropped": "messages_dropped",
    "bytes.received": "bytes_received",
    "bytes.sent": "bytes_sent",
}


class EmqxState(StrEnum):
    OK = "ok"  # every read answered
    UNREACHABLE = "unreachable"  # at least one read failed: its value is null
    NOT_CONFIGURED = "not_configured"  # EMQX_API_URL unset


@dataclass(frozen=True, slots=True)
class Usage:
    """An instance's current use as EMQX reports it; None where EMQX did not say."""

    emqx: EmqxState
    sessions: int | None = None
    retained_messages: int | None = None
    # EMQX's counters for the namespace; None on EMQX 6.0.x (no such route), before the
    # namespace's first session, or when the read failed.
    counters: Mapping[str, int] | None = None


class _NotFound:
    """A 404: EMQX answered, and has nothing there."""


NOT_FOUND = _NotFound()


class ConnectedClients:
    """`count(*usernames)`: EMQX's client count for those usernames, or None."""

    def __init__(
        self,
        settings: EmqxApiSettings,
        *,
        timeout_cap: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client: httpx.AsyncClient | None = None
        if settings.url is None:
            return
        timeout = settings.timeout_seconds
        if timeout_cap is not None:
            timeout = min(timeout, timeout_cap)
        self._client = httpx.AsyncClient(
            base_url=settings.base_url,
            auth=httpx.BasicAuth(settings.key, settings.secret),
            timeout=httpx.Timeout(timeout),
            headers={"Accept": "application/json"},
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"ConnectedClients(enabled={self._client is not None})"

    async def _get(self, path: str, params: httpx.QueryParams, what: str) -> Any:
        """The JSON of a 200, NOT_FOUND for a 404, None for anything else (logged)."""
        if self._client is None:
            return None
        try:
            response = await self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            log.warning("EMQX API unreachable for %s: %s", what, type(exc).__name__)
            return None
        if response.status_code == 404:
            return NOT_FOUND
        if response.status_code != 200:
            log.warning("EMQX API answered %s to %s", response.status_code, what)
            return None
        try:
            return response.json()
        except ValueError:
            log.warning("EMQX API's answer to %s is not JSON", what)
            return None

    async def count(self, username: str, *more: str) -> int | None:
        params = httpx.QueryParams({"username": [username, *more], "limit": 1, "page": 1})
        body = await self._get("/clients", params, "the client count")
        try:
            count = body["meta"]["count"]
        except (KeyError, TypeError):
            if body is not None:
                log.warning("EMQX client list has no meta.count")
            return None
        return count if _count(count) else None

    async def retained_count(self, instance_id: str) -> int | None:
        """How many retained messages EMQX holds under `<id>/`; None when unknown (also
        past MAX_RETAINED_PAGES pages: a partial count is no count)."""
        total = 0
        for page in range(1, MAX_RETAINED_PAGES + 1):
            params = httpx.QueryParams(
                {"topic": f"{instance_id}/#", "page": page, "limit": RETAINED_PAGE_SIZE}
            )
            body = await self._get("/mqtt/retainer/messages", params, "the retained count")
            data = body.get("data") if isinstance(body, dict) else None
            meta = body.get("meta") if isinstance(body, dict) else None
            if not isinstance(data, list) or not isinstance(meta, dict):
                return None
            total += len(data)
            if not meta.get("hasnext") or not data:
                return total
        log.warning("%s: more than %d retained messages listed", instance_id, total)
        return None

    async def namespace_counters(self, instance_id: str) -> Mapping[str, int] | _NotFound | None:
        """EMQX's message counters for the namespace; NOT_FOUND when EMQX keeps none."""
        path = f"/mt/ns/{quote(instance_id, safe='')}/metrics"
        body = await self._get(path, httpx.QueryParams(), "the namespace counters")
        if body is NOT_FOUND or body is None:
            return body
        stats = body.get("messaging_stats") if isinstance(body, dict) else None
        if not isinstance(stats, dict):
            log.warning("EMQX namespace metrics have no messaging_stats")
            return None
        return {
            ours: stats[theirs] for theirs, ours in COUNTERS.items() if _count(stats.get(theirs))
        }

    async def usage(self, instance_id: str, usernames: tuple[str, ...]) -> Usage:
        """Sessions, retained messages and counters of an instance, read at once."""
        if self._client is None:
            return Usage(EmqxState.NOT_CONFIGURED)
        sessions, retained, counters = await asyncio.gather(
            self.count(*usernames),
            self.retained_count(instance_id),
            self.namespace_counters(instance_id),
        )
        failed = sessions is None or retained is None or counters is None
        return Usage(
            EmqxState.UNREACHABLE if failed else EmqxState.OK,
            sessions,
            retained,
            None if isinstance(counters, _NotFound) else counters,
        )

    @property
    def enabled(self) -> bool:
        return self._client is not None

    async def reachable(self) -> bool:
        """EMQX's REST API answers the manager's key: `GET /clients?limit=1` is 200
        (apps/emqx_management/src/emqx_mgmt_api_clients.erl `clients/2`, tag 6.2.2)."""
        if self._client is None:
            return True
        try:
            response = await self._client.get("/clients", params={"limit": 1, "page": 1})
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
