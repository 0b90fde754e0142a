"""How many MQTT clients an instance has connected, asked of EMQX's REST API.

`GET /api/v5/clients?username=<instance id>&username=<scoped username>...&limit=1`
answers `meta.count`: the clients of the instance id and of its scoped credentials. The count is
decoration: without EMQX_API_URL, or when EMQX is slow, down, refuses the key or answers
something unexpected, it is None (shown as null), never an error. The manager asks with
the same EMQX_API_URL / EMQX_API_KEY / EMQX_API_SECRET as the ExHook (the key needs the
`connections` scope), and waits at most EMQX_API_TIMEOUT_SECONDS, capped at half the
request deadline.
"""

from __future__ import annotations

import logging

import httpx

from tenants.settings import EmqxApiSettings

log = logging.getLogger(__name__)


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

    async def count(self, username: str, *more: str) -> int | None:
        if self._client is None:
            return None
        params = httpx.QueryParams({"username": [username, *more], "limit": 1, "page": 1})
        try:
            response = await self._client.get("/clients", params=params)
        except httpx.HTTPError as exc:
            log.warning("EMQX API unreachable for the client count: %s", type(exc).__name__)
            return None
        if response.status_code != 200:
            log.warning("EMQX API answered %s to the client count", response.status_code)
            return None
        try:
            count = response.json()["meta"]["count"]
        except (ValueError, KeyError, TypeError):
            log.warning("EMQX client list has no meta.count")
            return None
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return None
        return count

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
