"""Management API keys: the bootstrap file, both ApiKeyStores, the HTTP routes, the cache."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from manager.bootstrap_keys import load_bootstrap_file, parse_bootstrap
from manager.settings import ManagerSettings
from tenants.api_keys import ApiKey, Role
from tenants.errors import AlreadyExists, ConfigError
from tenants.hashing import hash_password, verify_password
from tenants.kubernetes_api_keys import API_KEY_LABEL, secret_name_for
from tenants.local_store import LocalStore
from tenants.secret_format import TENANT_LABEL
from tenants.store import TenantStore
from tenants.stores import api_key_store_for
from tests.fakes.kubernetes_api import running_kubernetes_api, store_for
from tests.manager_client import ADMIN, BASE_ENV, basic, keys_file, manager_for

SECRET = "a-bootstrap-secret-value"


def test_bootstrap_file_format() -> None:
    text = f"# comment\n\n  ops:{SECRET}:administrator  \nwatch:{SECRET}x:viewer\nold:{SECRET}\n"
    keys = parse_bootstrap(text, "keys.txt")
    assert [(k.name, k.role) for k in keys] == [
        ("ops", Role.ADMINISTRATOR),
        ("watch", Role.VIEWER),
        ("old", Role.ADMINISTRATOR),  # EMQX's default role
    ]
    assert verify_password(keys[0].secret_hash, SECRET)
    assert not verify_password(keys[0].secret_hash, SECRET + "x")
    assert SECRET not in repr(keys)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (f"ops:{SECRET}:root", "role"),
        ("ops:short:viewer", "at least 16"),
        (f"ops:{SECRET}:viewer:extra", "key:secret:role"),
        ("just-a-word", "key:secret:role"),
        (f"bad key:{SECRET}:viewer", "the key must be"),
        (f":{SECRET}:viewer", "the key must be"),
    ],
)
def test_bad_bootstrap_line_names_the_line_never_the_secret(line: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_bootstrap(f"# keys\nfine:{SECRET}:viewer\n{line}\n", "keys.txt")
    message = str(caught.value)
    assert "keys.txt line 3" in message and why in message
    assert SECRET not in message and "short" not in message


def test_duplicate_and_unreadable_bootstrap(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="line 2: key 'a' appears twice"):
        parse_bootstrap(f"a:{SECRET}\na:{SECRET}\n", "f")
    with pytest.raises(ConfigError, match="cannot read it"):
        load_bootstrap_file(tmp_path / "missing")
    with pytest.raises(ConfigError, match="MANAGEMENT_API_KEYS_FILE"):
        ManagerSettings.from_environ({**BASE_ENV, "MANAGEMENT_API_KEYS_FILE": str(tmp_path)})
    settings = ManagerSettings.from_environ(
        {**BASE_ENV, "MANAGEMENT_API_KEYS_FILE": str(keys_file(tmp_path))}
    )
    assert settings.management_api and len(settings.bootstrap_keys) == 2
    assert ADMIN[1] not in repr(settings)


async def test_api_key_store(store: TenantStore) -> None:
    keys = api_key_store_for(store)
    try:
        now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        key = ApiKey("ci-bot", Role.VIEWER, hash_password("s"), now)
        stored = await keys.create(key)
        assert (stored.name, stored.role, stored.secret_hash, stored.created_at) == (
            key.name,
            key.role,
            key.secret_hash,
            now,
        )
        with pytest.raises(AlreadyExists):
            await keys.create(key)
        fetched = await keys.get("ci-bot")
        assert fetched is not None and fetched.secret_hash == key.secret_hash
        assert await keys.get("nobody") is None
        assert await keys.get("Not A Name") is None
        await keys.create(ApiKey("ops", Role.ADMINISTRATOR, hash_password("t"), now))
        assert sorted(k.name for k in await keys.list()) == ["ci-bot", "ops"]
        assert key.secret_hash not in repr(fetched)
        # API keys are not tenants: the tenant listing never sees them.
        assert (await store.list()).tenants == ()
        assert await keys.delete("ci-bot") is True
        assert await keys.delete("ci-bot") is False
        assert [k.name for k in await keys.list()] == ["ops"]
    finally:
        await keys.close()


async def test_kubernetes_api_key_secret_format() -> None:
    async with running_kubernetes_api() as api:
        store = store_for(api)
        keys = api_key_store_for(store)
        try:
            now = datetime(2026, 1, 2, tzinfo=UTC)
            await keys.create(ApiKey("ops", Role.VIEWER, hash_password("t"), now))
            secret = api.secret(secret_name_for("ops"))
            assert secret is not None
            labels = secret["metadata"]["labels"]
            assert labels[API_KEY_LABEL] == "true" and TENANT_LABEL not in labels
            assert labels["zero-emqx.io/role"] == "viewer"
            assert secret["metadata"]["annotations"]["zero-emqx.io/created-at"] == (
                "2026-01-02T00:00:00Z"
            )
            assert set(secret["data"]) == {"secret-hash"}
            # A Secret with that name but without our label is never touched.
            api.put_secret(
                {"metadata": {"name": secret_name_for("foreign")}, "data": {}, "type": "Opaque"}
            )
            assert await keys.get("foreign") is None
            assert await keys.delete("foreign") is False
            assert api.secret(secret_name_for("foreign")) is not None
            assert [k.name for k in await keys.list()] == ["ops"]
        finally:
            await keys.close()
            await store.close()


async def test_api_key_routes(store: TenantStore, tmp_path: Path) -> None:
    env = {"MANAGEMENT_API_KEYS_FILE": str(keys_file(tmp_path))}
    async with manager_for(store, env) as m:
        admin = basic(*ADMIN)
        created = await m.client.post(
            "/api/v1/api_keys", headers=admin, json={"name": "ci-bot", "role": "viewer"}
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["name"] == body["api_key"] == "ci-bot" and body["role"] == "viewer"
        assert body["source"] == "api" and body["created_at"].endswith("Z")
        as_bot = basic("ci-bot", body["api_secret"])
        assert (await m.client.get("/api/v1/instances", headers=as_bot)).status_code == 200
        denied = await m.client.post("/api/v1/api_keys", headers=as_bot, json={"name": "x"})
        assert denied.json()["code"] == "UNAUTHORIZED_ROLE"

        default = await m.client.post("/api/v1/api_keys", headers=admin, json={"name": "n2"})
        assert default.json()["role"] == "viewer"  # least privilege unless asked
        boss = await m.client.post(
            "/api/v1/api_keys", headers=admin, json={"name": "boss", "role": "administrator"}
        )
        as_boss = basic("boss", boss.json()["api_secret"])
        assert (await m.client.delete("/api/v1/api_keys/n2", headers=as_boss)).status_code == 204

        listing = await m.client.get("/api/v1/api_keys", headers=admin)
        rows: list[dict[str, Any]] = listing.json()["data"]
        assert [(r["name"], r["source"]) for r in rows] == [
            ("admin", "bootstrap"),
            ("viewer", "bootstrap"),
            ("boss", "api"),
            ("ci-bot", "api"),
        ]
        assert all(set(r) == {"name", "role", "source", "created_at"} for r in rows)
        assert "$argon2" not in listing.text and body["api_secret"] not in listing.text

        for payload, code in [
            ({"name": "ci-bot"}, "ALREADY_EXISTS"),
            ({"name": "admin"}, "ALREADY_EXISTS"),
            ({"name": "Bad_Name"}, "BAD_REQUEST"),
            ({"name": "ok", "role": "root"}, "BAD_REQUEST"),
            ({"name": "ok", "role": ["viewer"]}, "BAD_REQUEST"),
            ({"name": "ok", "secret": "mine"}, "BAD_REQUEST"),
            ({}, "BAD_REQUEST"),
        ]:
            refused = await m.client.post("/api/v1/api_keys", headers=admin, json=payload)
            assert refused.json()["code"] == code, payload

        kept = await m.client.delete("/api/v1/api_keys/admin", headers=admin)
        assert kept.status_code == 400 and "MANAGEMENT_API_KEYS_FILE" in kept.json()["message"]
        assert (await m.client.delete("/api/v1/api_keys/ci-bot", headers=admin)).status_code == 204
        gone = await m.client.delete("/api/v1/api_keys/ci-bot", headers=admin)
        assert gone.json()["code"] == "NOT_FOUND"
        revoked = await m.client.get("/api/v1/instances", headers=as_bot)
        assert revoked.json()["code"] == "BAD_API_KEY_OR_SECRET"


async def test_verified_keys_skip_argon2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = verify_password

    def counting(password_hash: str, password: str) -> bool:
        calls.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr("manager.api_keys.verify_password", counting)
    store = LocalStore(tmp_path / "data")
    try:
        async with manager_for(store, {"MANAGEMENT_API_KEYS_FILE": str(keys_file(tmp_path))}) as m:
            admin = basic(*ADMIN)
            made = await m.client.post("/api/v1/api_keys", headers=admin, json={"name": "bot"})
            as_bot = basic("bot", made.json()["api_secret"])
            for _ in range(5):
                assert (await m.client.get("/api/v1/instances", headers=as_bot)).status_code == 200
            assert len(calls) == 2  # the bootstrap key's first use, the bot's: once each
            wrong = basic("bot", "not-the-secret")
            for _ in range(2):
                assert (await m.client.get("/api/v1/instances", headers=wrong)).status_code == 401
            assert len(calls) == 4  # failures are never cached
            unknown = await m.client.get("/api/v1/instances", headers=basic("ghost", "x"))
            assert unknown.status_code == 401
            assert len(calls) == 5  # an unknown key pays a (decoy) verification too
    finally:
        await store.close()


class CountingKeys:
    """An ApiKeyStore that counts its reads (the rest is not needed here)."""

    def __init__(self, keys: dict[str, ApiKey]) -> None:
        self.keys = keys
        self.reads: list[str] = []

    async def get(self, name: str) -> ApiKey | None:
        self.reads.append(name)
        return self.keys.get(name)


@pytest.mark.parametrize(
    ("name", "secret", "role"),
    [
        ("boot", SECRET, Role.ADMINISTRATOR),  # bootstrap, right secret
        ("boot", SECRET + "x", None),  # bootstrap, wrong secret
        ("stored", "stored-secret-0123456789", Role.VIEWER),  # stored, right
        ("stored", "wrong-secret-0123456789", None),  # stored, wrong
        ("ghost", SECRET, None),  # unknown
    ],
)
async def test_every_key_check_takes_the_same_path(
    name: str, secret: str, role: Role | None
) -> None:
    """One store read and one argon2 verify, whichever branch: no branch is cheaper
    (bench/api_key_check.py measures it)."""
    from manager.api_keys import ApiKeyService
    from manager.bootstrap_keys import BootstrapKey
    from tenants.hashing import DECOY_HASH

    boot = BootstrapKey.of("boot", SECRET, Role.ADMINISTRATOR)
    stored_key = ApiKey(
        "stored", Role.VIEWER, hash_password("stored-secret-0123456789"), datetime.now(UTC)
    )
    store = CountingKeys({"stored": stored_key})
    verified: list[str] = []

    def verify(password_hash: str, password: str) -> bool:
        verified.append(password_hash)
        return verify_password(password_hash, password)

    service = ApiKeyService([boot], store, verify=verify)  # type: ignore[arg-type]
    assert await service.authenticate(name, secret) is role
    assert store.reads == [name]
    expected = {"boot": boot.secret_hash, "stored": stored_key.secret_hash}.get(name, DECOY_HASH)
    assert verified == [expected]
