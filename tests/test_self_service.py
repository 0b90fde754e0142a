"""Tenant self-service: an instance's own credentials manage that instance, and only it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tenants.hashing import DECOY_HASH, verify_password
from tenants.local_store import LocalStore
from tenants.quotas import DEFAULT_QUOTAS
from tenants.store import TenantStore
from tests.emqx_harness import ALLOW, DENY, eventually, running_exhook
from tests.manager_client import basic, manager_for
from tests.test_management_api import error_of, seed, verdict

OPEN = {"PER_IP_RATE": "0", "PER_IP_MAX_LIVE": "0"}


async def test_own_instance_read_rotate_delete(store: TenantStore) -> None:
    async with running_exhook(store) as (_, emqx), manager_for(store, OPEN) as m:
        created = (await m.client.post("/v1/instances", json={"tag": "mine"})).json()
        iid, password = created["instance_id"], created["credentials"]["password"]
        url = f"/v1/instances/{iid}"
        shown = await m.client.get(url, headers=basic(iid, password))
        assert shown.status_code == 200
        assert shown.headers["Cache-Control"] == "no-store"
        assert shown.json() == {
            "instance_id": iid,
            "state": "active",
            "created_at": shown.json()["created_at"],
            "expires_at": created["expires_at"],
            "tag": "mine",
            "connected_clients": None,
            "credentials": [],
            "limits": DEFAULT_QUOTAS.limits(),
            "usage": {
                "emqx": "not_configured",
                "sessions": {"used": None, "limit": DEFAULT_QUOTAS.max_sessions},
                "retained_messages": {"used": None, "limit": DEFAULT_QUOTAS.retained_messages},
                "counters": None,
            },
        }
        assert await eventually(verdict(emqx, iid, password), ALLOW, timeout=5) == ALLOW

        rotated = await m.client.post(url + "/rotate-credentials", headers=basic(iid, password))
        assert rotated.status_code == 200
        new_password = rotated.json()["credentials"]["password"]
        assert rotated.json()["credentials"]["username"] == iid and new_password != password
        stale = await m.client.get(url, headers=basic(iid, password))
        error_of(stale, 401, "BAD_USERNAME_OR_PWD")
        assert (await m.client.get(url, headers=basic(iid, new_password))).status_code == 200
        assert await eventually(verdict(emqx, iid, password), DENY, timeout=5) == DENY
        assert await eventually(verdict(emqx, iid, new_password), ALLOW, timeout=5) == ALLOW

        revoked = await m.client.delete(url, headers=basic(iid, new_password))
        assert revoked.status_code == 204
        assert await store.get(iid) is None
        assert await eventually(verdict(emqx, iid, new_password), DENY, timeout=5) == DENY
        error_of(
            await m.client.get(url, headers=basic(iid, new_password)), 401, "BAD_USERNAME_OR_PWD"
        )


async def test_credentials_open_only_their_own_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[str] = []
    real = verify_password

    def recording(password_hash: str, password: str) -> bool:
        used.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr("manager.self_service.verify_password", recording)
    store = LocalStore(tmp_path / "data")
    try:
        mine, other = await seed(store), await seed(store)
        expired = await seed(store, ttl=timedelta(seconds=-5))
        paused = await seed(store, paused=True)
        async with manager_for(store, {**OPEN, "AUTH_FAILURE_RATE": "0"}) as m:
            mine_id, other_id = mine.tenant.instance_id, other.tenant.instance_id
            missing = await m.client.get(f"/v1/instances/{mine_id}")
            error_of(missing, 401, "AUTHORIZATION_HEADER_ERROR")
            assert missing.headers["WWW-Authenticate"].startswith("Basic")
            assert used == []

            cases = [
                (mine_id, basic(mine_id, "wrong"), mine.tenant.password_hash),
                (other_id, basic(mine_id, mine.password), DECOY_HASH),  # someone else's id
                ("emqx-00000000000000aa", basic("emqx-00000000000000aa", "x"), DECOY_HASH),
                (
                    expired.tenant.instance_id,
                    basic(expired.tenant.instance_id, expired.password),
                    DECOY_HASH,
                ),
            ]
            for target, headers, expected_hash in cases:
                for method, suffix in (
                    ("GET", ""),
                    ("DELETE", ""),
                    ("POST", "/rotate-credentials"),
                ):
                    used.clear()
                    answer = await m.client.request(
                        method, f"/v1/instances/{target}{suffix}", headers=headers
                    )
                    error_of(answer, 401, "BAD_USERNAME_OR_PWD")
                    assert used == [expected_hash]  # same work whatever was wrong
            assert await store.get(other_id) == other.tenant
            assert await store.get(mine_id) == mine.tenant

            # Paused instances may still look, rotate and leave.
            paused_id = paused.tenant.instance_id
            look = await m.client.get(
                f"/v1/instances/{paused_id}", headers=basic(paused_id, paused.password)
            )
            assert look.json()["state"] == "paused"
            wrong_method = await m.client.put(f"/v1/instances/{mine_id}")
            error_of(wrong_method, 405, "METHOD_NOT_ALLOWED")
            plain = await m.client.get("/v1/instances")  # the public POST's contract is text
            assert plain.status_code == 405 and plain.headers["Content-Type"].startswith("text/")
    finally:
        await store.close()


async def test_failures_are_limited_per_ip(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data")
    try:
        mine = await seed(store)
        async with manager_for(store, {**OPEN, "AUTH_FAILURE_RATE": "2"}) as m:
            iid = mine.tenant.instance_id
            url = f"/v1/instances/{iid}"
            for _ in range(2):
                error_of(
                    await m.client.get(url, headers=basic(iid, "no")), 401, "BAD_USERNAME_OR_PWD"
                )
            blocked = await m.client.get(url, headers=basic(iid, mine.password))
            error_of(blocked, 429, "TOO_MANY_REQUESTS")
            assert int(blocked.headers["Retry-After"]) >= 1
            proxied = await m.client.get(
                url, headers={**basic(iid, mine.password), "X-Forwarded-For": "10.9.9.9"}
            )
            assert proxied.status_code == 429  # the header counts only from trusted proxies
            created = await m.client.post("/v1/instances")
            assert created.status_code == 201  # creating stays open
    finally:
        await store.close()
