"""The slice of EMQX's REST API (`/api/v5`) the ExHook uses to kick sessions and drop namespaces.

Contract, as read in emqx/emqx tag 6.2.2:

- `DELETE /mt/ns/{ns}` (`apps/emqx_mt/src/emqx_mt_api.erl`, scope `cluster_operations`)
  answers 204 whether or not the namespace exists, and starts EMQX's asynchronous kicker
  for the namespace's clients; 404 only comes from a cluster without the `/mt` routes.
- `GET /mt/ns_list?last_ns=&limit=`: a JSON array of names in key order; `last_ns` is an
  exclusive cursor.
- `GET /clients?username=&page=&limit=` (`emqx_mgmt_api_clients.erl`, scope `connections`):
  `{"data": [...], "meta": {"page", "limit", "hasnext", ...}}`; `username` is an array
  (`hoconsc:array(binary())`, also in 6.0.3 and e6.0.1): repeated, it lists the clients
  of any of those usernames.
- `POST /clients/kickout/bulk` with a JSON array of client ids: 204.
- `get_json` reads the effective settings (exhook/emqx_settings.py names the routes):
  scope `system` (`/configs`, `/listeners`) or `access_control` (`/authorization`).
- `GET /mqtt/retainer/messages?topic=<filter>&page=&limit=` (`emqx_retainer_api.erl`
  `lookup_retained/2`, scope `connections`): `{"data": [{"topic", "publish_at", ...}],
  "meta": {"page", "limit", "hasnext"}}`, oldest first (`emqx_retainer_mnesia:page_read/5`
  sorts by timestamp), expired messages left out; no `count` with a topic filter.
- `DELETE /mqtt/retainer/message/{topic}` (`with_topic/2`): 204 after deleting every
  retained message matching the URL-encoded topic or filter (`<ns>/#`;
  `emqx_retainer_mnesia:delete_message/2` walks the matches of a wildcard), 404 when
  nothing matches; 400 with a retainer backend other than the built-in database.
- 401 `BAD_API_KEY_OR_SECRET` for a wrong key/secret, 403 `UNAUTHORIZED_ROLE` for a key
  without the path's scope (`apps/emqx_dashboard/src/emqx_dashboard.erl`).

Every answer maps to an `Outcome` (DONE, GONE, BUSY: all progress) or an `EmqxApiError`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from tenants.errors import ConfigError, ZeroEmqxError
from tenants.settings import EmqxApiSettings

log = logging.getLogger(__name__)

NS_PAGE_SIZE = 500  # ns_list has no enforced maximum in 6.2.2; stay well under MAX_PAGE_SIZE
CLIENT_PAGE_SIZE = 1000  # /clients allows up to 10000
KICK_BATCH = 1000
MAX_CLIENT_PAGES = 1000
# EMQX's largest page (emqx_dashboard_swagger MAX_ROW_LIMIT): each page makes EMQX read and
# sort every match (emqx_retainer_mnesia:page_read/5), so few big pages cost it least.
RETAINED_PAGE_SIZE = 10000
MAX_RETAINED_PAGES = 100


class Outcome(StrEnum):
    DONE = "done"  # 204/202: done or started
    GONE = "gone"  # 404: nothing there (any more)
    BUSY = "busy"  # 409: a kick of that namespace is already running; re-check later


class EmqxApiError(ZeroEmqxError):
    """A REST call did not make progress; worth retrying later."""


class EmqxUnavailable(EmqxApiError):
    """Connection refused or dropped, or a 5xx answer."""


class EmqxTimeout(EmqxApiError):
    """No answer within EMQX_API_TIMEOUT_SECONDS."""


class EmqxAuthError(EmqxApiError):
    """401/403: the API key, its secret or its scopes are wrong (a misconfiguration)."""


class EmqxRequestError(EmqxApiError):
    """Any other unexpected status, or a body that does not follow the contract."""


@dataclass(frozen=True, slots=True)
class EmqxClient:
    """One row of `GET /clients`: enough to tell one session from a later one."""

    clientid: str
    username: str
    connected_at: str = ""


@dataclass(frozen=True, slots=True)
class RetainedMessage:
    """One row of `GET /mqtt/retainer/messages` (the mounted topic, `<ns>/...`)."""

    topic: str
    publish_at: str = ""


def instance_filter(instance_id: str) -> str:
    """Every retained topic of an instance: EMQX stores them mounted, `<id>/...`."""
    return f"{instance_id}/#"


class EmqxApi(Protocol):
    async def delete_namespace(self, ns: str) -> Outcome: ...

    def list_namespaces(self) -> AsyncIterator[str]: ...

    async def list_clients(self, username: str, *more: str) -> list[EmqxClient]:
        """The clients of `username` and of each of `more`."""

    async def kick_clients(self, clientids: Sequence[str]) -> Outcome: ...

    async def list_retained(self, topic_filter: str | None = None) -> list[RetainedMessage]:
        """The retained messages matching `topic_filter` (all without one), oldest first."""

    async def delete_retained(self, topic: str) -> Outcome:
        """Delete the retained messages matching `topic` (a name or a filter): DONE, or
        GONE when nothing matched."""

    async def ping(self) -> None: ...


_SCOPES = {
    "/mt": "cluster_operations",
    "/clients": "connections",
    "/mqtt": "connections",  # /mqtt/retainer: emqx_retainer_api.erl scopes/0
    "/authorization": "access_control",  # emqx_authz_api_*.erl scopes/0
}  # anything else (/configs, /listeners): "system"


def _scope_for(path: str) -> str:
    return next((s for prefix, s in _SCOPES.items() if path.startswith(prefix)), "system")


def _describe(response: httpx.Response) -> str:
    """`CODE: message` from EMQX's error body, or the status line; never request headers."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and ("code" in body or "message" in body):
        return f"{body.get('code', '')}: {str(body.get('message', ''))[:200]}"
    return response.reason_phrase or str(response.status_code)


class HttpxEmqxApi:
    """`EmqxApi` over httpx with Basic auth (API key and secret)."""

    def __init__(
        self, settings: EmqxApiSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        if not settings.enabled:
            raise ConfigError("EMQX_API_URL is not set")
        self.settings = settings
        self._client = httpx.AsyncClient(
            base_url=settings.base_url,
            auth=httpx.BasicAuth(settings.key, settings.secret),
            timeout=httpx.Timeout(settings.timeout_seconds),
            headers={"Accept": "application/json"},
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"HttpxEmqxApi({self.settings.base_url!r})"

    async def __aenter__(self) -> HttpxEmqxApi:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(
        self, method: str, path: str, *, ok: Sequence[int], what: str, **kwargs: Any
    ) -> httpx.Response:
        """The response when its status is in `ok` or 404/409; an EmqxApiError otherwise."""
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise EmqxTimeout(
                f"EMQX API did not answer {what} within {self.settings.timeout_seconds}s"
            ) from None
        except httpx.TransportError as exc:
            raise EmqxUnavailable(f"EMQX API unreachable for {what}: {exc!r}") from None
        status = response.status_code
        if status in ok or status in (404, 409):
            return response
        if status == 401:
            message = (
                f"EMQX refused the API key for {what} (401 {_describe(response)}):"
                " check EMQX_API_KEY and EMQX_API_SECRET"
            )
            log.error("%s", message)
            raise EmqxAuthError(message)
        if status == 403:
            message = (
                f"EMQX API key may not {what} (403 {_describe(response)}):"
                f" it needs the {_scope_for(path)!r} scope"
            )
            log.error("%s", message)
            raise EmqxAuthError(message)
        if status >= 500:
            raise EmqxUnavailable(f"EMQX API failed {what}: {status} {_describe(response)}")
        raise EmqxRequestError(f"EMQX API refused {what}: {status} {_describe(response)}")

    @staticmethod
    def _outcome(response: httpx.Response) -> Outcome:
        if response.status_code == 404:
            return Outcome.GONE
        if response.status_code == 409:
            return Outcome.BUSY
        return Outcome.DONE

    async def delete_namespace(self, ns: str) -> Outcome:
        path = f"/mt/ns/{quote(ns, safe='')}"
        response = await self._call("DELETE", path, ok=(200, 204), what=f"delete namespace {ns}")
        return self._outcome(response)

    async def list_namespaces(self) -> AsyncIterator[str]:
        last: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": NS_PAGE_SIZE}
            if last is not None:
                params["last_ns"] = last
            response = await self._call(
                "GET", "/mt/ns_list", ok=(200,), what="list namespaces", params=params
            )
            if response.status_code != 200:
                raise EmqxRequestError(
                    f"EMQX API cannot list namespaces: {response.status_code}"
                    f" {_describe(response)} (is the emqx_mt app running?)"
                )
            page = _json(response, "namespace list")
            if not isinstance(page, list) or not all(isinstance(n, str) for n in page):
                raise EmqxRequestError("EMQX namespace list is not a JSON array of names")
            for name in page:
                yield name
            if len(page) < NS_PAGE_SIZE:
                return
            last = page[-1]

    async def list_clients(self, username: str, *more: str) -> list[EmqxClient]:
        clients: list[EmqxClient] = []
        usernames = list(dict.fromkeys((username, *more)))
        what = f"list the clients of {username}"
        if len(usernames) > 1:
            what += f" and {len(usernames) - 1} more username(s)"
        params = [("username", u) for u in usernames]
        pages = self._pages("/clients", params, MAX_CLIENT_PAGES, CLIENT_PAGE_SIZE, what, "client")
        async for row in pages:
            if not isinstance(row.get("clientid"), str):
                raise EmqxRequestError("EMQX client list row without a clientid")
            clients.append(
                EmqxClient(
                    clientid=row["clientid"],
                    username=str(row.get("username") or ""),
                    connected_at=str(row.get("connected_at") or ""),
                )
            )
        return clients

    async def _pages(
        self,
        path: str,
        params: list[tuple[str, str]],
        max_pages: int,
        page_size: int,
        what: str,
        noun: str,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every row of a paged EMQX listing (`data` + `meta.hasnext`), page by page up
        to `max_pages`; EmqxRequestError for any answer that is not such a page."""
        for page in range(1, max_pages + 1):
            query = [*params, ("page", str(page)), ("limit", str(page_size))]
            response = await self._call("GET", path, ok=(200,), what=what, params=query)
            if response.status_code != 200:
                raise EmqxRequestError(f"EMQX API cannot {what}: {response.status_code}")
            body = _json(response, f"{noun} list")
            data = body.get("data") if isinstance(body, dict) else None
            meta = body.get("meta") if isinstance(body, dict) else None
            if not isinstance(data, list) or not isinstance(meta, dict):
                raise EmqxRequestError(f"EMQX {noun} list has no data/meta")
            for row in data:
                if not isinstance(row, dict):
                    raise EmqxRequestError(f"EMQX {noun} list row is not an object")
                yield row
            if not meta.get("hasnext") or not data:
                return

    async def kick_clients(self, clientids: Sequence[str]) -> Outcome:
        ids = list(dict.fromkeys(clientids))
        for start in range(0, len(ids), KICK_BATCH):
            batch = ids[start : start + KICK_BATCH]
            what = f"kick {len(batch)} client(s)"
            response = await self._call(
                "POST", "/clients/kickout/bulk", ok=(200, 204), what=what, json=batch
            )
            if response.status_code in (404, 409):
                raise EmqxRequestError(
                    f"EMQX API refused to {what}: {response.status_code} {_describe(response)}"
                )
        return Outcome.DONE

    async def get_json(self, path: str, what: str) -> Any:
        """A GET whose answer must be 200 with a JSON body (exhook.emqx_settings)."""
        response = await self._call("GET", path, ok=(200,), what=what)
        if response.status_code != 200:
            raise EmqxRequestError(
                f"EMQX API cannot {what}: {response.status_code} {_describe(response)}"
            )
        return _json(response, what)

    async def list_retained(self, topic_filter: str | None = None) -> list[RetainedMessage]:
        messages: list[RetainedMessage] = []
        what = f"list the retained messages of {topic_filter or 'every topic'}"
        params = [] if topic_filter is None else [("topic", topic_filter)]
        pages = self._pages(
            "/mqtt/retainer/messages",
            params,
            MAX_RETAINED_PAGES,
            RETAINED_PAGE_SIZE,
            what,
            "retained message",
        )
        async for row in pages:
            if not isinstance(row.get("topic"), str):
                raise EmqxRequestError("EMQX retained message row without a topic")
            messages.append(RetainedMessage(row["topic"], str(row.get("publish_at") or "")))
        return messages

    async def delete_retained(self, topic: str) -> Outcome:
        path = f"/mqtt/retainer/message/{quote(topic, safe='')}"
        what = f"delete the retained messages of {topic}"
        response = await self._call("DELETE", path, ok=(200, 204), what=what)
        if response.status_code == 409:
            raise EmqxRequestError(f"EMQX API refused to {what}: 409 {_describe(response)}")
        return self._outcome(response)

    async def ping(self) -> None:
        response = await self._call("GET", "/status", ok=(200,), what="report its status")
        if response.status_code != 200:
            raise EmqxRequestError(f"EMQX status: {response.status_code}")


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise EmqxRequestError(f"EMQX {what} is not JSON") from None
