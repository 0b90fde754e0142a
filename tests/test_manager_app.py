"""The public contract of POST /v1/instances, against the running manager."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tenants.hashing import verify_password
from tenants.local_store import LocalStore
from tenants.record import parse_time, utc_now
from tenants.store import TenantStore
from tests.manager_client import BASE_ENV, manager_for, readyz_until
from tests.waiting import until

ID_RE = re.compile(r"^emqx-[0-9a-f]{16}$")
PASSWORD_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


async def test_bare_post_returns_working_credentials(store: TenantStore) -> None:
    env = {"PUBLIC_HOST": "mqtt.example.com", "TTL_SECONDS": "3600"}
    async with manager_for(store, env) as m:
        before = utc_now()
        response = await m.client.post("/v1/instances")
        assert response.status_code == 201
        assert response.headers["Cache-Control"] == "no-store"
        body = response.json()
        instance_id = body["instance_id"]
        assert ID_RE.fullmatch(instance_id)
        assert body["mqtts"] == {
            "host": "mqtt.example.com",
            "port": 8883,
            "uri": "mqtts://mqtt.example.com:8883",
        }
        assert body["wss"] == {
            "host": "mqtt.example.com",
            "port": 8084,
            "uri": "wss://mqtt.example.com:8084/mqtt",
        }
        creds = body["credentials"]
        assert creds["username"] == instance_id
        password = creds["password"]
        assert PASSWORD_RE.fullmatch(password)
        assert len(base64.urlsafe_b64decode(password + "=")) == 32
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["expires_at"])
        expires = parse_time(body["expires_at"])
        assert before + timedelta(seconds=3600) <= expires <= utc_now() + timedelta(seconds=3600)

        stored = await store.get(instance_id)
        assert stored is not None
        assert stored.password_hash.startswith("$argon2id$")
        assert password not in stored.password_hash
        assert verify_password(stored.password_hash, password)
        assert stored.expires_at == expires
        assert sorted(body) == ["credentials", "expires_at", "instance_id", "mqtts", "wss"]


async def test_tag_is_stored_and_endpoints_follow_settings(store: TenantStore) -> None:
    env = {
        "PUBLIC_HOST": "broker.test",
        "MQTTS_PORT": "18883",
        "WSS_PORT": "443",
        "WSS_PATH": "/ws",
    }
    async with manager_for(store, env) as m:
        response = await m.client.post("/v1/instances", json={"tag": "my-app.v1_2"})
        assert response.status_code == 201
        body = response.json()
        assert body["wss"]["uri"] == "wss://broker.test:443/ws"
        assert body["mqtts"]["uri"] == "mqtts://broker.test:18883"
        stored = await store.get(body["instance_id"])
        assert stored is not None and stored.tag == "my-app.v1_2"
        assert "my-app" not in body["credentials"]["username"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"tag"', "JSON object"),
        (b"null", "JSON object"),
        (b'{"tag": "ok", "ttl": 5}', "unknown field(s): ttl"),
        (b'{"tag": 5}', "tag must be"),
        (b'{"tag": "-leading"}', "tag must be"),
        (b'{"tag": "trailing_"}', "tag must be"),
        (b'{"tag": "sp ace"}', "tag must be"),
        (b'{"tag": "' + b"a" * 64 + b'"}', "tag must be"),
    ],
)
async def test_bad_bodies_are_400_and_store_nothing(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    store = LocalStore(tmp_path)
    try:
        async with manager_for(store) as m:
            response = await m.client.post(
                "/v1/instances", content=content, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 400
            assert response.headers["Content-Type"].startswith("text/plain")
            assert reason in response.text
            assert (await store.list()).tenants == ()
    finally:
        await store.close()


async def test_empty_tag_and_empty_object_are_valid(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    try:
        async with manager_for(store) as m:
            for body in ({}, {"tag": ""}, {"tag": "a" * 63}):
                assert (await m.client.post("/v1/instances", json=body)).status_code == 201
    finally:
        await store.close()


async def test_oversized_body_is_413_without_reading_it(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    try:
        async with manager_for(store, {"MAX_BODY_BYTES": "64"}) as m:
            big = b'{"tag": "' + b"a" * 10_000 + b'"}'
            response = await m.client.post("/v1/instances", content=big)
            assert response.status_code == 413

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(100):
                    yield b" " * 1000

            response = await m.client.post("/v1/instances", content=chunks())
            assert response.status_code == 413
            assert (await store.list()).tenants == ()
    finally:
        await store.close()


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_other_methods_are_405(tmp_path: Path, method: str) -> None:
    store = LocalStore(tmp_path)
    try:
        async with manager_for(store) as m:
            response = await m.client.request(method, "/v1/instances")
            assert response.status_code == 405
            assert "POST" in response.headers["Allow"]
    finally:
        await store.close()


async def test_per_ip_rate_limit_with_retry_after(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    try:
        async with manager_for(store, {"PER_IP_RATE": "2", "PER_IP_MAX_LIVE": "0"}) as m:
            statuses = [(await m.client.post("/v1/instances")).status_code for _ in range(2)]
            assert statuses == [201, 201]
            response = await m.client.post("/v1/instances")
            assert response.status_code == 429
            assert 1 <= int(response.headers["Retry-After"]) <= 30
            assert len((await store.list()).tenants) == 2
    finally:
        await store.close()


async def test_per_ip_live_cap_counts_from_the_store(store: TenantStore) -> None:
    env = {"PER_IP_RATE": "0", "PER_IP_MAX_LIVE": "2", "TTL_SECONDS": "600"}
    async with manager_for(store, env) as m:
        for _ in range(2):
            assert (await m.client.post("/v1/instances")).status_code == 201
        response = await m.client.post("/v1/instances")
        assert response.status_code == 429
        assert 590 <= int(response.headers["Retry-After"]) <= 600
        # A new process sees the same instances: the cap survives a restart.
    async with manager_for(store, env) as m:
        assert (await m.client.post("/v1/instances")).status_code == 429
        # Deleting one (an operator, say) frees a slot once the watch reports it.
        first = (await store.list()).tenants[0]
        await store.delete(first.instance_id)
        for _ in range(50):
            if m.sync.index.get(first.instance_id) is None:
                break
            await asyncio.sleep(0.05)
        assert (await m.client.post("/v1/instances")).status_code == 201


async def test_expired_instances_do_not_count(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    env = {"PER_IP_RATE": "0", "PER_IP_MAX_LIVE": "1", "TTL_SECONDS": "60"}
    now = [datetime(2026, 12, 1, 12, 0, tzinfo=UTC)]
    try:
        async with manager_for(store, env, clock=lambda: now[0]) as m:
            assert (await m.client.post("/v1/instances")).status_code == 201
            now[0] += timedelta(seconds=59)
            assert (await m.client.post("/v1/instances")).status_code == 429
            now[0] += timedelta(seconds=1)  # the first one's expires_at: no longer live
            assert (await m.client.post("/v1/instances")).status_code == 201
    finally:
        await store.close()


def expected_ip_hash(group: str, network: str) -> str:
    """README: 16 hex of HMAC-SHA256(IP_HASH_KEY, "network:" + network), then 16 of "group:"."""
    key = BASE_ENV["IP_HASH_KEY"].encode()

    def digest(text: str) -> str:
        return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:16]

    return digest("network:" + network) + digest("group:" + group)


async def test_forwarded_for_only_from_trusted_proxies(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    env = {"PER_IP_RATE": "0", "PER_IP_MAX_LIVE": "1"}
    try:
        async with manager_for(store, env) as m:
            spoof = {"X-Forwarded-For": "203.0.113.7"}
            assert (await m.client.post("/v1/instances", headers=spoof)).status_code == 201
            # Not from a trusted proxy: the header is ignored, the peer's cap applies.
            other = {"X-Forwarded-For": "203.0.113.8"}
            assert (await m.client.post("/v1/instances", headers=other)).status_code == 429
        async with manager_for(store, {**env, "TRUSTED_PROXIES": "127.0.0.0/8"}) as m:
            for ip in ("198.51.100.1", "198.51.100.2"):
                headers = {"X-Forwarded-For": f"{ip}, 127.0.0.5"}
                assert (await m.client.post("/v1/instances", headers=headers)).status_code == 201
            again = {"X-Forwarded-For": "198.51.100.1"}
            assert (await m.client.post("/v1/instances", headers=again)).status_code == 429
        hashes = {t.ip_hash for t in (await store.list()).tenants}
        # Computed here from the documented rule, not with the manager's function.
        assert expected_ip_hash("198.51.100.1/32", "198.51.100.0/24") in hashes
        assert expected_ip_hash("127.0.0.1/32", "127.0.0.0/24") in hashes
        raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
        assert b"198.51.100.1" not in raw and b"127.0.0.1" not in raw
    finally:
        await store.close()


async def test_concurrent_creations_never_overshoot_global_cap(store: TenantStore) -> None:
    env = {
        "PER_IP_RATE": "0",
        "PER_IP_MAX_LIVE": "0",
        "PER_NETWORK_MAX_LIVE": "0",
        "MAX_LIVE_INSTANCES": "150",
        "MAX_LIVE_RESERVED": "0",
    }
    async with manager_for(store, env) as m:
        responses = await asyncio.gather(*(m.client.post("/v1/instances") for _ in range(200)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses.count(201) == 150
        assert statuses.count(429) == 50
        assert all("Retry-After" in r.headers for r in responses if r.status_code == 429)
        ids = {r.json()["instance_id"] for r in responses if r.status_code == 201}
        assert len(ids) == 150
        assert len((await store.list()).tenants) == 150


async def test_200_parallel_creations_give_200_distinct_ids(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    env = {
        "PER_IP_RATE": "0",
        "PER_IP_MAX_LIVE": "0",
        "PER_NETWORK_MAX_LIVE": "0",
        "MAX_LIVE_INSTANCES": "0",
    }
    try:
        async with manager_for(store, env) as m:
            responses = await asyncio.gather(*(m.client.post("/v1/instances") for _ in range(200)))
            assert {r.status_code for r in responses} == {201}
            assert len({r.json()["instance_id"] for r in responses}) == 200
            assert len({r.json()["credentials"]["password"] for r in responses}) == 200
    finally:
        await store.close()


async def test_health_and_readiness(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    try:
        async with manager_for(store) as m:
            assert (await m.client.get("/healthz")).status_code == 200
            await readyz_until(m, 200, "ready")
    finally:
        await store.close()


async def test_restart_keeps_instances_and_no_plaintext_anywhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    passwords = []
    store = LocalStore(tmp_path)
    try:
        async with manager_for(store, {"PER_IP_MAX_LIVE": "0", "PER_IP_RATE": "0"}) as m:
            for tag in ("a", "b", "c"):
                body = (await m.client.post("/v1/instances", json={"tag": tag})).json()
                passwords.append((body["instance_id"], body["credentials"]["password"]))
    finally:
        await store.close()
    reopened = LocalStore(tmp_path)
    try:
        async with manager_for(reopened) as m:
            assert len(m.sync.index) == 3
            for instance_id, password in passwords:
                tenant = await reopened.get(instance_id)
                assert tenant is not None and verify_password(tenant.password_hash, password)
    finally:
        await reopened.close()
    on_disk = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for _, password in passwords:
        assert password.encode() not in on_disk
        assert password not in caplog.text


async def test_unreachable_manager_port_is_a_clear_error(tmp_path: Path) -> None:
    """Sanity check of the harness itself: a closed port is refused, not hung."""
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.post("http://127.0.0.1:9/v1/instances")


async def test_limits_hold_across_two_replicas(tmp_path: Path) -> None:
    """Two managers on one store (the chart runs 2): the rate and the caps are the
    release's, not each replica's, once a replica's index has seen the other's writes."""
    first, second = LocalStore(tmp_path), LocalStore(tmp_path)
    env = {"PER_IP_RATE": "2", "PER_IP_MAX_LIVE": "0", "TTL_SECONDS": "600"}
    try:
        async with manager_for(first, env) as a, manager_for(second, env) as b:
            for _ in range(2):
                assert (await a.client.post("/v1/instances")).status_code == 201
            await until(lambda: b.sync.index.count_live(utc_now()) == 2, timeout=10)
            refused = await b.client.post("/v1/instances")
            assert refused.status_code == 429
            assert "address" in refused.text
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
        capped = {"PER_IP_RATE": "0", "PER_IP_MAX_LIVE": "3", "TTL_SECONDS": "600"}
        async with manager_for(first, capped) as a, manager_for(second, capped) as b:
            assert (await a.client.post("/v1/instances")).status_code == 201
            await until(lambda: b.sync.index.count_live(utc_now()) == 3, timeout=10)
            assert (await b.client.post("/v1/instances")).status_code == 429
    finally:
        await first.close()
        await second.close()
