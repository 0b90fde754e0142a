"""The management API (/api/v1) against the running manager, on both stores; every change
is observed by a real ExHook on the same store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from manager.main import running_manager
from manager.settings import ManagerSettings
from tenants.local_store import LocalStore
from tenants.record import format_time, utc_now
from tenants.store import Listing, TenantStore
from tests.conftest import Minted, make_tenant
from tests.emqx_harness import ALLOW, DENY, FakeEmqx, eventually, running_exhook
from tests.fakes.emqx_api import running_emqx_api
from tests.manager_client import ADMIN, BASE_ENV, VIEWER, basic, keys_file, manager_for
from tests.waiting import until

AS_ADMIN = basic(*ADMIN)
AS_VIEWER = basic(*VIEWER)


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "MANAGEMENT_API_KEYS_FILE": str(keys_file(tmp_path)),
        "PER_IP_RATE": "0",
        "PER_IP_MAX_LIVE": "0",
        **extra,
    }


async def seed(store: TenantStore, **kwargs: Any) -> Minted:
    minted = make_tenant(**kwargs)
    return Minted(await store.create(minted.tenant), minted.password)


def verdict(emqx: FakeEmqx, username: str, password: str) -> Callable[[], Awaitable[str]]:
    async def probe() -> str:
        return (await emqx.connect(username, password)).verdict

    return probe


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert isinstance(body["message"], str)
    assert set(body) == {"code", "message"}
    return body


async def test_list_pages_filters_and_orders(store: TenantStore, tmp_path: Path) -> None:
    seeded = [await seed(store, tag="alpha") for _ in range(3)]
    paused = await seed(store, paused=True)
    expired = await seed(store, ttl=timedelta(seconds=-5), tag="old")
    async with manager_for(store, env_for(tmp_path)) as m:
        await until(lambda: len(m.sync.index) == 5)
        get = m.client.get
        first = (await get("/api/v1/instances?limit=2", headers=AS_ADMIN)).json()
        assert first["meta"] == {"page": 1, "limit": 2, "count": 5, "hasnext": True}
        every = (await get("/api/v1/instances", headers=AS_VIEWER)).json()
        assert every["meta"] == {"page": 1, "limit": 100, "count": 5, "hasnext": False}
        tenants = [m.tenant for m in [*seeded, paused, expired]]
        order = sorted(tenants, key=lambda t: (t.created_at, t.instance_id))
        assert [row["instance_id"] for row in every["data"]] == [t.instance_id for t in order]
        assert first["data"] == every["data"][:2]
        last = (await get("/api/v1/instances?limit=2&page=3", headers=AS_ADMIN)).json()
        assert last["data"] == every["data"][4:]
        assert last["meta"]["hasnext"] is False
        assert set(every["data"][0]) == {"instance_id", "state", "created_at", "expires_at", "tag"}

        async def ids(query: str) -> set[str]:
            body = (await get(f"/api/v1/instances?{query}", headers=AS_ADMIN)).json()
            return {row["instance_id"] for row in body["data"]}

        assert await ids("tag=alpha") == {s.tenant.instance_id for s in seeded}
        assert await ids("state=active") == {s.tenant.instance_id for s in seeded}
        assert await ids("state=paused") == {paused.tenant.instance_id}
        assert await ids("state=expired&tag=old") == {expired.tenant.instance_id}
        assert await ids("state=paused&tag=alpha") == set()
        for bad in ("limit=10001", "limit=0", "page=0", "page=x", "state=gone", "limit=-1"):
            error_of(await get(f"/api/v1/instances?{bad}", headers=AS_ADMIN), 400, "BAD_REQUEST")
        assert (await get("/api/v1/instances?limit=10000", headers=AS_ADMIN)).status_code == 200


async def test_each_action_is_seen_by_the_exhook(store: TenantStore, tmp_path: Path) -> None:
    async with (
        running_exhook(store) as (_, emqx),
        manager_for(store, env_for(tmp_path)) as m,
    ):
        created = (await m.client.post("/v1/instances", json={"tag": "acts"})).json()
        iid, password = created["instance_id"], created["credentials"]["password"]
        base = f"/api/v1/instances/{iid}"
        assert await eventually(verdict(emqx, iid, password), ALLOW, timeout=5) == ALLOW

        paused = await m.client.post(base + "/pause", headers=AS_ADMIN)
        assert paused.status_code == 200
        assert paused.json()["state"] == "paused"
        assert await eventually(verdict(emqx, iid, password), DENY, timeout=5) == DENY
        assert (await m.client.get(base, headers=AS_VIEWER)).json()["state"] == "paused"
        again = await m.client.post(base + "/pause", headers=AS_ADMIN)
        assert again.json()["state"] == "paused"  # idempotent

        resumed = await m.client.post(base + "/resume", headers=AS_ADMIN)
        assert resumed.json()["state"] == "active"
        assert await eventually(verdict(emqx, iid, password), ALLOW, timeout=5) == ALLOW

        rotated = await m.client.post(base + "/rotate-credentials", headers=AS_ADMIN)
        assert rotated.status_code == 200
        assert rotated.headers["Cache-Control"] == "no-store"
        body = rotated.json()
        new_password = body["credentials"]["password"]
        assert body["credentials"]["username"] == iid
        assert body["expires_at"] == created["expires_at"]
        assert new_password != password and len(new_password) == 43
        assert await eventually(verdict(emqx, iid, password), DENY, timeout=5) == DENY
        assert await eventually(verdict(emqx, iid, new_password), ALLOW, timeout=5) == ALLOW

        later = utc_now() + timedelta(days=10)
        moved = await m.client.put(
            base + "/expiry", headers=AS_ADMIN, json={"expires_at": format_time(later)}
        )
        assert moved.status_code == 200
        assert moved.json()["expires_at"] == format_time(later)
        stored = await store.get(iid)
        assert stored is not None and stored.expires_at == later and not stored.paused

        deleted = await m.client.delete(base, headers=AS_ADMIN)
        assert deleted.status_code == 204
        assert await eventually(verdict(emqx, iid, new_password), DENY, timeout=5) == DENY
        error_of(await m.client.get(base, headers=AS_ADMIN), 404, "NOT_FOUND")
        error_of(await m.client.delete(base, headers=AS_ADMIN), 404, "NOT_FOUND")
        for action in ("/pause", "/resume", "/rotate-credentials"):
            error_of(await m.client.post(base + action, headers=AS_ADMIN), 404, "NOT_FOUND")


async def test_expiry_rules(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data")
    try:
        target = await seed(store)
        gone = await seed(store, ttl=timedelta(seconds=-5))
        async with manager_for(store, env_for(tmp_path, MAX_TTL_SECONDS="864000")) as m:
            url = f"/api/v1/instances/{target.tenant.instance_id}/expiry"
            created = target.tenant.created_at

            async def put(body: object) -> httpx.Response:
                return await m.client.put(url, headers=AS_ADMIN, json=body)

            limit = created + timedelta(seconds=864000)
            assert (await put({"expires_at": format_time(limit)})).status_code == 200
            beyond = await put({"expires_at": format_time(limit + timedelta(seconds=1))})
            assert "MAX_TTL_SECONDS" in error_of(beyond, 400, "BAD_REQUEST")["message"]
            past = await put({"expires_at": format_time(utc_now() - timedelta(minutes=1))})
            assert "DELETE" in error_of(past, 400, "BAD_REQUEST")["message"]
            shorter = utc_now() + timedelta(hours=1)
            offset = shorter.astimezone().isoformat()  # any timezone, whole seconds kept
            assert (await put({"expires_at": offset})).json()["expires_at"] == format_time(shorter)
            bad: object
            for bad in (
                {},
                {"expires_at": "tomorrow"},
                {"expires_at": "2030-01-01T00:00:00"},  # no timezone
                {"expires_at": "9999-12-31T23:59:59-01:00"},  # past what UTC holds: was a 500
                {"expires_at": "0001-01-01T00:00:00+01:00"},
                {"expires_at": "9999-12-31T23:59:59Z"},
                {"expires_at": "2030-02-30T00:00:00Z"},
                {"expires_at": "20300101T000000Z"},  # ISO 8601, not RFC 3339
                {"expires_at": 5},
                {"expires_at": format_time(shorter), "extra": 1},
                [],
            ):
                error_of(await put(bad), 400, "BAD_REQUEST")
            no_body = await m.client.put(url, headers=AS_ADMIN)
            error_of(no_body, 400, "BAD_REQUEST")
            huge = await m.client.put(url, headers=AS_ADMIN, content=b"{" + b" " * 5000 + b"}")
            error_of(huge, 413, "BAD_REQUEST")
            stale = f"/api/v1/instances/{gone.tenant.instance_id}"
            for action in ("/pause", "/resume", "/rotate-credentials"):
                refused = await m.client.post(stale + action, headers=AS_ADMIN)
                assert "expired" in error_of(refused, 400, "BAD_REQUEST")["message"]
            stored = await store.get(target.tenant.instance_id)
            assert stored is not None and stored.expires_at == shorter.replace(microsecond=0)
    finally:
        await store.close()


async def test_connected_clients_from_emqx(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data")
    try:
        target = await seed(store)
        iid = target.tenant.instance_id
        async with running_emqx_api() as api:
            api.connect(iid, f"{iid}-a")
            api.connect(iid, f"{iid}-b")
            api.connect("emqx-00000000000000ff", "other")
            api.retainer.retain(f"{iid}/state")
            api.mt.messaging_stats[iid] = {"messages.received": 4}
            env = env_for(
                tmp_path,
                EMQX_API_URL=api.url,
                EMQX_API_KEY=api.key,
                EMQX_API_SECRET=api.secret,
                QUOTA_MAX_SESSIONS="5",
            )
            async with manager_for(store, env) as m:
                url = f"/api/v1/instances/{iid}"
                shown = (await m.client.get(url, headers=AS_ADMIN)).json()
                assert shown["connected_clients"] == 2
                assert shown["limits"]["max_sessions"] == 5  # QUOTA_MAX_SESSIONS
                usage = shown["usage"]
                assert usage["emqx"] == "ok"
                assert usage["sessions"] == {"used": 2, "limit": 5}
                assert usage["retained_messages"] == {"used": 1, "limit": 100}
                assert usage["counters"]["messages_received"] == 4
                call = api.calls_to("GET", "/clients")[-1]
                assert ("username", iid) in call.query and call.auth_ok
                api.fail_next(1, 503, path="/clients")
                failed = (await m.client.get(url, headers=AS_ADMIN)).json()
                assert failed["connected_clients"] is None
                assert failed["usage"]["emqx"] == "unreachable"
                assert failed["usage"]["retained_messages"]["used"] == 1
                await api.set_down(True)
                down = await m.client.get(url, headers=AS_ADMIN)
                assert down.status_code == 200 and down.json()["connected_clients"] is None
                assert down.json()["usage"]["emqx"] == "unreachable"
                assert down.json()["usage"]["counters"] is None
        async with manager_for(store, env_for(tmp_path)) as m:  # no EMQX configured
            plain = (await m.client.get(f"/api/v1/instances/{iid}", headers=AS_ADMIN)).json()
            assert plain["connected_clients"] is None
            assert plain["usage"]["emqx"] == "not_configured"
            assert plain["state"] == "active" and plain["tag"] == ""
    finally:
        await store.close()


async def test_authentication_and_roles(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data")
    try:
        target = await seed(store)
        async with manager_for(store, env_for(tmp_path)) as m:
            url = "/api/v1/instances"
            missing = await m.client.get(url)
            error_of(missing, 401, "AUTHORIZATION_HEADER_ERROR")
            assert missing.headers["WWW-Authenticate"].startswith("Basic")
            error_of(
                await m.client.get(url, headers={"Authorization": "Bearer x"}),
                401,
                "AUTHORIZATION_HEADER_ERROR",
            )
            wrong = await m.client.get(url, headers=basic(ADMIN[0], "nope-nope-nope-nope"))
            error_of(wrong, 401, "BAD_API_KEY_OR_SECRET")
            unknown = await m.client.get(url, headers=basic("someone", ADMIN[1]))
            error_of(unknown, 401, "BAD_API_KEY_OR_SECRET")
            assert (await m.client.get(url, headers=AS_VIEWER)).status_code == 200
            error_of(await m.client.get("/api/v1/nowhere", headers=AS_ADMIN), 404, "NOT_FOUND")
            error_of(await m.client.get("/api/v1/nowhere"), 401, "AUTHORIZATION_HEADER_ERROR")
            wrong_method = await m.client.patch(url, headers=AS_ADMIN)
            error_of(wrong_method, 405, "METHOD_NOT_ALLOWED")

            # A viewer changes nothing: every route but the instance reads is refused.
            iid = target.tenant.instance_id
            refused = 0
            for route in m.app.router.routes():
                path = route.resource.canonical if route.resource else ""
                if not path.startswith("/api/v1/") or route.method == "HEAD":
                    continue
                if route.method == "GET" and not path.startswith("/api/v1/api_keys"):
                    continue
                concrete = path.replace("{instance_id}", iid).replace("{name}", "viewer")
                answer = await m.client.request(
                    route.method, concrete, headers=AS_VIEWER, json={"name": "x"}
                )
                error_of(answer, 403, "UNAUTHORIZED_ROLE")
                refused += 1
            assert refused == 10  # 7 instance changes (2 of credentials), 3 api key routes
            stored = await store.get(iid)
            assert stored == target.tenant
    finally:
        await store.close()


async def test_failed_authentications_are_limited_per_ip(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data")
    try:
        async with manager_for(store, env_for(tmp_path, AUTH_FAILURE_RATE="3")) as m:
            url = "/api/v1/instances"
            assert (await m.client.get(url, headers=AS_ADMIN)).status_code == 200
            for _ in range(3):
                bad = await m.client.get(url, headers=basic(ADMIN[0], "wrong-wrong-wrong"))
                error_of(bad, 401, "BAD_API_KEY_OR_SECRET")
            blocked = await m.client.get(url, headers=AS_ADMIN)  # even the right secret
            error_of(blocked, 429, "TOO_MANY_REQUESTS")
            assert int(blocked.headers["Retry-After"]) >= 1
            gone = await m.client.get("/v1/instances/emqx-0000000000000001", headers=AS_ADMIN)
            error_of(gone, 429, "TOO_MANY_REQUESTS")  # one limit for both kinds of credentials
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("extra", "enabled"),
    [
        ({}, False),
        ({"MANAGEMENT_API": "true"}, True),
        ({"MANAGEMENT_API_KEYS_FILE": "<file>"}, True),
        ({"MANAGEMENT_API_KEYS_FILE": "<file>", "MANAGEMENT_API": "false"}, False),
    ],
)
async def test_the_api_is_off_unless_configured(
    tmp_path: Path, extra: dict[str, str], enabled: bool
) -> None:
    env = {k: str(keys_file(tmp_path)) if v == "<file>" else v for k, v in extra.items()}
    store = LocalStore(tmp_path / "data")
    try:
        async with manager_for(store, env) as m:
            answer = await m.client.get("/api/v1/instances", headers=AS_ADMIN)
            if not enabled:
                error_of(answer, 404, "NOT_FOUND")
            elif "MANAGEMENT_API_KEYS_FILE" in env:
                assert answer.status_code == 200
            else:  # on, but no key yet: none verifies
                error_of(answer, 401, "BAD_API_KEY_OR_SECRET")
            assert (await m.client.get("/api-docs")).status_code == 200
    finally:
        await store.close()


async def test_list_follows_the_store(store: TenantStore, tmp_path: Path) -> None:
    async with manager_for(store, env_for(tmp_path)) as m:
        target = await seed(store)
        url = "/api/v1/instances"

        async def count() -> int:
            body = (await m.client.get(url, headers=AS_ADMIN)).json()
            return int(body["meta"]["count"])

        await until(lambda: len(m.sync.index) == 1)
        assert await count() == 1
        gone = await m.client.delete(f"{url}/{target.tenant.instance_id}", headers=AS_ADMIN)
        assert gone.status_code == 204
        await until(lambda: len(m.sync.index) == 0)
        assert await count() == 0


class _GatedStore(LocalStore):
    """A local store whose first listing waits for the test."""

    gate: asyncio.Event

    async def list(self) -> Listing:
        await self.gate.wait()
        return await super().list()


async def test_list_waits_for_the_index(tmp_path: Path) -> None:
    store = _GatedStore(tmp_path / "data")
    _GatedStore.gate = asyncio.Event()
    settings = ManagerSettings.from_environ({**BASE_ENV, **env_for(tmp_path)})
    try:
        async with running_manager(settings, store) as (runner, sync):
            host, port = runner.addresses[0][:2]
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
                early = await client.get("/api/v1/instances", headers=AS_ADMIN)
                error_of(early, 503, "SERVICE_UNAVAILABLE")
                _GatedStore.gate.set()
                assert await sync.wait_synced(5)
                assert (await client.get("/api/v1/instances", headers=AS_ADMIN)).status_code == 200
    finally:
        await store.close()
