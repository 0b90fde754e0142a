"""The pure core of the management API: queries, pages, roles, credentials, expiry rules,
update retries, limits and caches, and the EMQX client count's tolerance."""

from __future__ import annotations

import base64
import dataclasses
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from manager.api_keys import VerifiedCache
from manager.auth import FailureLimiter, parse_basic, role_allows
from manager.emqx_clients import ConnectedClients
from manager.instances import BadRequest
from manager.metrics import ManagerMetrics, Tier
from manager.rate_limit import RateLimiter
from manager.settings import ManagerSettings
from manager.views import ListQuery, instance_page
from tenants.api_keys import Role
from tenants.errors import ConfigError, Conflict, NotFound
from tenants.operations import (
    CredentialsChanged,
    ExpiryRefused,
    InstanceExpired,
    checked_expiry,
    modify,
    set_password_hash,
    set_paused,
)
from tenants.record import Tenant
from tenants.settings import EmqxApiSettings
from tests.manager_client import BASE_ENV

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def tenant(n: int, *, age: int = 0, paused: bool = False, tag: str = "", ttl: int = 3600) -> Tenant:
    created = NOW - timedelta(seconds=age)
    return Tenant(
        instance_id=f"emqx-{n:016x}",
        password_hash="$argon2id$v=19$m=2048,t=1,p=1$c2FsdA$aGFzaA",
        created_at=created,
        expires_at=created + timedelta(seconds=ttl),
        tag=tag,
        paused=paused,
        revision="1",
    )


def test_list_query_parsing() -> None:
    assert ListQuery.from_query({}) == ListQuery(1, 100, None, None)
    parsed = ListQuery.from_query({"page": "2", "limit": "10000", "tag": "", "state": "expired"})
    assert parsed == ListQuery(2, 10000, "", "expired")
    for bad in (
        {"limit": "10001"},
        {"limit": "0"},
        {"page": "-1"},
        {"page": "1.5"},
        {"limit": "٣"},
        {"state": "running"},
    ):
        with pytest.raises(BadRequest):
            ListQuery.from_query(bad)


def test_page_order_filters_and_meta() -> None:
    rows = [
        tenant(3, age=5),
        tenant(1, age=5),
        tenant(2, age=9, paused=True, tag="x"),
        tenant(4, age=7200, tag="x"),
    ]
    page = instance_page(rows, ListQuery(limit=2), NOW)
    assert [r["instance_id"] for r in page["data"]] == [
        "emqx-0000000000000004",
        "emqx-0000000000000002",
    ]
    assert page["meta"] == {"page": 1, "limit": 2, "count": 4, "hasnext": True}
    second = instance_page(rows, ListQuery(page=2, limit=2), NOW)
    assert [r["instance_id"] for r in second["data"]] == [
        "emqx-0000000000000001",
        "emqx-0000000000000003",
    ]
    assert second["meta"]["hasnext"] is False
    beyond = instance_page(rows, ListQuery(page=9, limit=2), NOW)
    assert beyond["data"] == [] and beyond["meta"]["count"] == 4
    states = {
        r["instance_id"][-1]: r["state"] for r in instance_page(rows, ListQuery(), NOW)["data"]
    }
    assert states == {"1": "active", "2": "paused", "3": "active", "4": "expired"}
    tagged = instance_page(rows, ListQuery(tag="x", state="paused"), NOW)
    assert [r["instance_id"] for r in tagged["data"]] == ["emqx-0000000000000002"]
    assert "password_hash" not in str(page) and "argon2" not in str(page)


def test_roles() -> None:
    assert role_allows(Role.ADMINISTRATOR, "DELETE", "/api/v1/api_keys/x")
    assert role_allows(Role.VIEWER, "GET", "/api/v1/instances")
    assert role_allows(Role.VIEWER, "HEAD", "/api/v1/instances/emqx-1")
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert not role_allows(Role.VIEWER, method, "/api/v1/instances/emqx-1/pause")
    assert not role_allows(Role.VIEWER, "GET", "/api/v1/api_keys")


def test_parse_basic() -> None:
    def header(raw: bytes) -> str:
        return "Basic " + base64.b64encode(raw).decode()

    parsed = parse_basic(header(b"key:sec:ret"))
    assert parsed is not None and (parsed.user, parsed.secret) == ("key", "sec:ret")
    assert "sec:ret" not in repr(parsed)
    empty_secret = parse_basic(header(b"key:"))
    assert empty_secret is not None and empty_secret.secret == ""
    for bad in (
        None,
        "",
        "Bearer abc",
        "Basic !!!",
        header(b"no-colon"),
        header(b":secret"),
        header(b"\xff:\xfe"),
    ):
        assert parse_basic(bad) is None


def test_expiry_rules() -> None:
    t = tenant(1, ttl=3600)
    assert checked_expiry(t, NOW + timedelta(seconds=10, microseconds=7), NOW, 7200) == (
        NOW + timedelta(seconds=10)
    )
    assert checked_expiry(t, NOW + timedelta(seconds=7200), NOW, 7200) == NOW + timedelta(hours=2)
    with pytest.raises(ExpiryRefused, match="MAX_TTL_SECONDS"):
        checked_expiry(t, NOW + timedelta(seconds=7201), NOW, 7200)
    with pytest.raises(ExpiryRefused, match="future"):
        checked_expiry(t, NOW, NOW, 7200)
    end_of_time = dataclasses.replace(
        t, created_at=datetime(9999, 12, 31, 23, 0, tzinfo=UTC)
    )  # hand-edited
    assert checked_expiry(end_of_time, NOW + timedelta(hours=1), NOW, 7200) == (
        NOW + timedelta(hours=1)
    )
    old = tenant(2, age=7200, ttl=3600)
    with pytest.raises(InstanceExpired):
        set_paused(True, NOW)(old)
    with pytest.raises(CredentialsChanged):
        set_password_hash("$argon2id$new", NOW, expected="$argon2id$other")(t)
    assert set_password_hash("$argon2id$new", NOW, expected=t.password_hash)(t).password_hash == (
        "$argon2id$new"
    )


class _RacyStore:
    """A store whose record changes under the first `conflicts` updates."""

    def __init__(self, record: Tenant, conflicts: int) -> None:
        self.record = record
        self.conflicts = conflicts
        self.writes: list[Tenant] = []

    async def get(self, instance_id: str) -> Tenant | None:
        return self.record if instance_id == self.record.instance_id else None

    async def update(self, wanted: Tenant) -> Tenant:
        if self.conflicts:
            self.conflicts -= 1
            self.record = dataclasses.replace(
                self.record, tag="changed", revision=str(self.conflicts + 10)
            )
            raise Conflict("changed")
        self.writes.append(wanted)
        self.record = dataclasses.replace(wanted, revision="99")
        return self.record


async def test_modify_retries_on_conflict_and_reapplies() -> None:
    racy = _RacyStore(tenant(1), conflicts=2)
    result = await modify(racy, "emqx-0000000000000001", set_paused(True, NOW))  # type: ignore[arg-type]
    assert result.paused and result.tag == "changed" and result.revision == "99"
    assert len(racy.writes) == 1 and racy.writes[0].revision == "10"
    assert await modify(racy, "emqx-0000000000000001", set_paused(True, NOW)) is racy.record  # type: ignore[arg-type]
    assert len(racy.writes) == 1  # nothing to change: nothing written
    hopeless = _RacyStore(tenant(1), conflicts=100)
    with pytest.raises(Conflict):
        await modify(hopeless, "emqx-0000000000000001", set_paused(True, NOW))  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        await modify(racy, "emqx-00000000000000ff", set_paused(True, NOW))  # type: ignore[arg-type]


def test_failure_limiter_and_rate_wait() -> None:
    clock = [0.0]
    metrics = ManagerMetrics()
    limiter = FailureLimiter(2, clock=lambda: clock[0], metrics=metrics)
    limiter.check("a")
    limiter.failed("a")
    limiter.failed("a")
    assert metrics.refusals(Tier.AUTH_FAILURES) == 0
    with pytest.raises(Exception, match="too many") as caught:
        limiter.check("a")
    assert getattr(caught.value, "status", None) == 429
    assert metrics.refusals(Tier.AUTH_FAILURES) == 1
    limiter.check("b")
    clock[0] = 30.0  # one token back after 30 s at 2 per minute
    limiter.check("a")
    assert RateLimiter(0).wait("x") == 0.0
    assert RateLimiter(5).wait("never-seen") == 0.0


def test_verified_cache() -> None:
    cache = VerifiedCache(max_size=2)
    cache.remember("k", "hash", "secret")
    assert cache.hit("k", "hash", "secret")
    assert not cache.hit("k", "hash2", "secret") and not cache.hit("k", "hash", "secreT")
    cache.remember("a", "h", "s")
    cache.remember("b", "h", "s")
    assert not cache.hit("k", "hash", "secret")  # evicted, least recently used
    assert b"secret" not in b"".join(cache._entries)


async def test_client_count_tolerates_anything() -> None:
    answers = iter(
        [
            httpx.Response(200, json={"data": [], "meta": {"count": 3}}),
            httpx.Response(200, json={"meta": {"count": "3"}}),
            httpx.Response(200, text="not json"),
            httpx.Response(401, json={"code": "BAD_API_KEY_OR_SECRET"}),
            httpx.Response(200, json={"meta": {"count": True}}),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v5/clients"
        assert request.url.params["username"] == "emqx-0000000000000001"
        return next(answers)

    settings = EmqxApiSettings("http://emqx:18083", "k", "s")
    clients = ConnectedClients(settings, transport=httpx.MockTransport(handler))
    try:
        got = [await clients.count("emqx-0000000000000001") for _ in range(5)]
    finally:
        await clients.aclose()
    assert got == [3, None, None, None, None]
    assert await ConnectedClients(EmqxApiSettings()).count("x") is None


def test_settings() -> None:
    settings = ManagerSettings.from_environ(BASE_ENV)
    assert not settings.management_api and settings.max_ttl_seconds == 2592000
    assert settings.auth_failure_rate == 10 and settings.emqx.url is None
    with pytest.raises(ConfigError, match="MAX_TTL_SECONDS"):
        ManagerSettings.from_environ({**BASE_ENV, "TTL_SECONDS": "100", "MAX_TTL_SECONDS": "99"})
    with pytest.raises(ConfigError, match="MANAGEMENT_API"):
        ManagerSettings.from_environ({**BASE_ENV, "MANAGEMENT_API": "maybe"})
    with pytest.raises(ConfigError, match="EMQX_API_KEY"):
        ManagerSettings.from_environ({**BASE_ENV, "EMQX_API_URL": "http://emqx:18083"})
    with pytest.raises(ConfigError, match="http"):
        EmqxApiSettings("ftp://emqx", "k", "s")
    secret = EmqxApiSettings("http://emqx:18083/api/v5/", "k", "hidden-secret")
    assert secret.base_url == "http://emqx:18083/api/v5" and "hidden-secret" not in repr(secret)
