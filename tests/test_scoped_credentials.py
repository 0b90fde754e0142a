"""Scoped credentials end to end: created, listed and deleted through the management API
on both stores, admitted by a real ExHook on the same store (CONNECT), their rights
enforced by EMQX's file ACL as shipped (PUBLISH, SUBSCRIBE: tests/emqx_acl.py, with no
hook call), their sessions kicked through the EMQX API stand-in when they go, and an
operator's hand edit of the Secret behaving exactly like the API."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from exhook.emqx_api import HttpxEmqxApi
from exhook.lifecycle import Lifecycle, LifecycleSettings
from exhook.server import Attachment, ExhookRuntime
from exhook.settings import UnknownUserAction
from tenants.credentials import CREDENTIAL_ID_RE, SCOPED_USERNAME_RE
from tenants.settings import EmqxApiSettings
from tenants.store import TenantStore
from tests.emqx_harness import ALLOW, DENY, IGNORE, FakeEmqx, eventually, running_exhook
from tests.fakes.emqx_api import FakeEmqxApi, running_emqx_api
from tests.fakes.kubernetes_api import running_kubernetes_api, store_for
from tests.manager_client import RunningManager, manager_for
from tests.test_management_api import AS_ADMIN, AS_VIEWER, env_for, error_of, verdict
from tests.waiting import until

FAST = LifecycleSettings(reap_interval=0.05, kick_retry_initial=0.05, kick_retry_max=0.2)
NEW_CREDENTIAL_FIELDS = {
    "username",
    "password",
    "label",
    "allow_publish",
    "allow_subscribe",
    "created_at",
}


def lifecycle_on(store: TenantStore, api: HttpxEmqxApi) -> Attachment:
    def attach(runtime: ExhookRuntime) -> Lifecycle:
        return Lifecycle(store, runtime.index, runtime.sync, api, FAST)

    return attach


@asynccontextmanager
async def stack_for(
    store: TenantStore, tmp_path: Path, **exhook: Any
) -> AsyncIterator[tuple[RunningManager, FakeEmqx, FakeEmqxApi]]:
    """The manager and an ExHook (with its lifecycle, against the EMQX API stand-in) on
    one store."""
    async with AsyncExitStack() as stack:
        fake = await stack.enter_async_context(running_emqx_api(kick_delay=0.05))
        settings = EmqxApiSettings(fake.url, fake.key, fake.secret, timeout_seconds=0.5)
        api = await stack.enter_async_context(HttpxEmqxApi(settings))
        _, emqx = await stack.enter_async_context(
            running_exhook(store, attach=[lifecycle_on(store, api)], **exhook)
        )
        m = await stack.enter_async_context(manager_for(store, env_for(tmp_path)))
        yield m, emqx, fake


async def new_instance(m: RunningManager) -> tuple[str, str]:
    created = (await m.client.post("/v1/instances")).json()
    return created["instance_id"], created["credentials"]["password"]


async def new_credential(m: RunningManager, iid: str, **body: Any) -> dict[str, Any]:
    answer = await m.client.post(
        f"/api/v1/instances/{iid}/credentials", headers=AS_ADMIN, json=body
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    created: dict[str, Any] = answer.json()
    assert set(created) == NEW_CREDENTIAL_FIELDS
    assert SCOPED_USERNAME_RE.fullmatch(created["username"])
    assert created["username"].startswith(iid + ".")
    cred_id = created["username"].split(".")[1]
    assert CREDENTIAL_ID_RE.fullmatch(cred_id)  # a rights letter, never a legacy id
    letter = {(True, False): "p", (False, True): "s", (True, True): "x"}
    assert cred_id[0] == letter[(created["allow_publish"], created["allow_subscribe"])]
    return created


async def rights(emqx: FakeEmqx, username: str) -> tuple[str, str]:
    """What EMQX's ACL lets the username do (the hook is not asked: no call is made)."""
    calls = sum(emqx.calls.values())
    publish = emqx.acl(username, "sensors/1", action="publish")
    subscribe = emqx.acl(username, "sensors/#", action="subscribe")
    assert sum(emqx.calls.values()) == calls
    return publish, subscribe


async def test_read_only_and_publish_only_credentials(store: TenantStore, tmp_path: Path) -> None:
    async with stack_for(store, tmp_path) as (m, emqx, _):
        iid, owner_password = await new_instance(m)
        reader = await new_credential(m, iid, label="dashboard", allow_subscribe=True)
        assert (reader["allow_publish"], reader["allow_subscribe"]) == (False, True)
        device = await new_credential(m, iid, label="sensor-1", allow_publish=True)
        user, password = reader["username"], reader["password"]
        assert await eventually(verdict(emqx, user, password), ALLOW, timeout=5) == ALLOW
        assert await rights(emqx, user) == (DENY, ALLOW)
        assert (await emqx.connect(device["username"], device["password"])).verdict == ALLOW
        assert await rights(emqx, device["username"]) == (ALLOW, DENY)
        assert (await emqx.connect(iid, owner_password)).verdict == ALLOW
        assert await rights(emqx, iid) == (ALLOW, ALLOW)

        # Refused: a wrong password, an unknown credential id, another rights letter on
        # the same id, a client id without the username's prefix (the owner's, or none),
        # another credential's password, the owner's password.
        cred_id = user.split(".")[1]
        unknown = f"{iid}.s{'0' * 7 if cred_id[1:] != '0' * 7 else '1' * 7}"
        for username, secret, override, client_id in [
            (user, device["password"], True, "sensor-1"),
            (user, owner_password, True, "sensor-1"),
            (unknown, password, True, "sensor-1"),
            (f"{iid}.x{cred_id[1:]}", password, True, "sensor-1"),
            (user, password, False, "sensor-1"),
            (user, password, False, f"{iid}-sensor-1"),  # the owner's client-id space
        ]:
            answer = await emqx.connect(username, secret, client_id, override=override)
            assert answer.verdict == DENY and answer.explicit, username
        prefixed = await emqx.connect(user, password, f"{user}-x", override=False)
        assert prefixed.verdict == ALLOW  # "<id>.<r><7 hex>-x": its own space

        # Listed without secrets, also on the instance; a viewer may read but not change.
        listed = await m.client.get(f"/api/v1/instances/{iid}/credentials", headers=AS_VIEWER)
        assert listed.status_code == 200
        rows = listed.json()["data"]
        assert [r["username"] for r in rows] == [
            r["username"] for r in sorted(rows, key=lambda r: (r["created_at"], r["username"]))
        ]
        assert {r["username"] for r in rows} == {user, device["username"]}
        for row in rows:
            assert set(row) == NEW_CREDENTIAL_FIELDS - {"password"}
        detail = (await m.client.get(f"/api/v1/instances/{iid}", headers=AS_VIEWER)).json()
        assert detail["credentials"] == rows
        text = listed.text + json.dumps(detail)
        assert password not in text and "argon2" not in text
        base = f"/api/v1/instances/{iid}/credentials"
        error_of(
            await m.client.post(base, headers=AS_VIEWER, json={"label": "x"}),
            403,
            "UNAUTHORIZED_ROLE",
        )
        error_of(
            await m.client.delete(f"{base}/{user}", headers=AS_VIEWER), 403, "UNAUTHORIZED_ROLE"
        )

        # Rotating the instance's own password leaves the credentials alone.
        rotated = await m.client.post(
            f"/api/v1/instances/{iid}/rotate-credentials", headers=AS_ADMIN
        )
        assert rotated.status_code == 200
        assert (await emqx.connect(user, password)).verdict == ALLOW

        # Deleted: refused within a second; a second delete is 404.
        assert (await m.client.delete(f"{base}/{user}", headers=AS_ADMIN)).status_code == 204
        assert await eventually(verdict(emqx, user, password), DENY, timeout=1) == DENY
        error_of(await m.client.delete(f"{base}/{user}", headers=AS_ADMIN), 404, "NOT_FOUND")
        assert (await emqx.connect(device["username"], device["password"])).verdict == ALLOW


async def test_bad_requests_and_limits(store: TenantStore, tmp_path: Path) -> None:
    env = env_for(tmp_path, MAX_CREDENTIALS_PER_INSTANCE="2")
    async with manager_for(store, env) as m:
        iid, _ = await new_instance(m)
        other, _ = await new_instance(m)
        base = f"/api/v1/instances/{iid}/credentials"
        for body in [
            {"label": "nothing"},  # no right at all
            {"label": "x", "allow_publish": False, "allow_subscribe": False},
            {"label": "", "allow_publish": True},
            {"label": "-bad-", "allow_publish": True},
            {"label": "x" * 64, "allow_publish": True},
            {"allow_publish": True},
            {"label": "x", "allow_publish": "yes"},
            {"label": "x", "allow_publish": True, "password": "mine"},
            ["label"],
        ]:
            answer = await m.client.post(base, headers=AS_ADMIN, json=body)
            error_of(answer, 400, "BAD_REQUEST")
        error_of(await m.client.post(base, headers=AS_ADMIN), 400, "BAD_REQUEST")
        missing = "/api/v1/instances/emqx-0000000000000000/credentials"
        error_of(
            await m.client.post(
                missing, headers=AS_ADMIN, json={"label": "x", "allow_publish": True}
            ),
            404,
            "NOT_FOUND",
        )
        error_of(await m.client.get(missing, headers=AS_ADMIN), 404, "NOT_FOUND")
        first = await new_credential(m, iid, label="one", allow_publish=True)
        await new_credential(m, iid, label="two", allow_subscribe=True)
        full = await m.client.post(
            base, headers=AS_ADMIN, json={"label": "three", "allow_publish": True}
        )
        assert "MAX_CREDENTIALS_PER_INSTANCE" in error_of(full, 400, "BAD_REQUEST")["message"]
        # A delete names a credential of this instance, by its full username.
        cred_id = first["username"].split(".")[1]
        for wrong in [iid, f"{other}.{cred_id}", cred_id, f"{iid}.zzzzzzzz"]:
            error_of(await m.client.delete(f"{base}/{wrong}", headers=AS_ADMIN), 404, "NOT_FOUND")
        assert (
            await m.client.delete(f"{base}/{first['username']}", headers=AS_ADMIN)
        ).status_code == 204


async def test_deleting_a_credential_kicks_only_its_sessions(
    store: TenantStore, tmp_path: Path
) -> None:
    async with stack_for(store, tmp_path) as (m, emqx, fake):
        iid, owner_password = await new_instance(m)
        reader = await new_credential(m, iid, label="dashboard", allow_subscribe=True)
        user = reader["username"]
        assert await eventually(verdict(emqx, user, reader["password"]), ALLOW, timeout=5) == ALLOW
        fake.connect(user, f"{user}-dash")
        fake.connect(iid, f"{iid}-owner")
        base = f"/api/v1/instances/{iid}/credentials"
        assert (await m.client.delete(f"{base}/{user}", headers=AS_ADMIN)).status_code == 204
        await until(lambda: fake.clients_of(user) == [])
        assert fake.clients_of(iid) == [f"{iid}-owner"]
        assert iid in fake.namespaces  # the namespace stays
        listed = [c for c in fake.calls_to("GET", "/clients") if ("username", user) in c.query]
        kicked = fake.calls_to("POST", "/clients/kickout/bulk")[-1].body
        assert listed and kicked == [f"{user}-dash"]
        assert (await emqx.connect(iid, owner_password)).verdict == ALLOW


async def test_an_operator_removing_the_data_key_revokes_the_credential(tmp_path: Path) -> None:
    """`kubectl patch secret ID --type=json -p '[{"op":"remove",
    "path":"/data/credential.<cred_id>"}]'`, as the API server applies it."""
    async with running_kubernetes_api() as kube:
        store = store_for(kube)
        try:
            async with stack_for(store, tmp_path) as (m, emqx, fake):
                iid, _ = await new_instance(m)
                reader = await new_credential(m, iid, label="dashboard", allow_subscribe=True)
                device = await new_credential(m, iid, label="sensor", allow_publish=True)
                user, password = reader["username"], reader["password"]
                assert await eventually(verdict(emqx, user, password), ALLOW, timeout=5) == ALLOW
                fake.connect(user, f"{user}-dash")
                key = f"credential.{user.split('.')[1]}"
                secret = kube.secret(iid)
                assert secret is not None and key in secret["data"]
                entry = json.loads(base64.b64decode(secret["data"][key]))
                assert set(entry) == {
                    "label",
                    "password_hash",
                    "allow_publish",
                    "allow_subscribe",
                    "created_at",
                }
                assert entry["password_hash"].startswith("$argon2id$")
                kube.patch(iid, {"data": {key: None}})
                assert await eventually(verdict(emqx, user, password), DENY, timeout=1) == DENY
                await until(lambda: fake.clients_of(user) == [])
                assert (await emqx.connect(device["username"], device["password"])).verdict == ALLOW
                listed = await m.client.get(
                    f"/api/v1/instances/{iid}/credentials", headers=AS_ADMIN
                )
                assert [r["username"] for r in listed.json()["data"]] == [device["username"]]
        finally:
            await store.close()


@pytest.mark.parametrize("action", [UnknownUserAction.IGNORE, UnknownUserAction.DENY])
async def test_a_username_in_our_namespace_is_never_left_to_others(
    store: TenantStore, tmp_path: Path, action: UnknownUserAction
) -> None:
    """EMQX puts any username whose first 21 characters are an instance id into that
    instance's namespace: only the exact forms may get in, whatever UNKNOWN_USER_ACTION
    says, and EMQX's ACL gives any other such username no topic at all."""
    async with stack_for(store, tmp_path, unknown_user_action=action) as (m, emqx, _):
        iid, owner_password = await new_instance(m)
        reader = await new_credential(m, iid, label="dashboard", allow_subscribe=True)
        user, password = reader["username"], reader["password"]
        assert await eventually(verdict(emqx, user, password), ALLOW, timeout=5) == ALLOW
        for username, secret in [
            (f"{iid}zzz", owner_password),
            (f"{iid}-x", owner_password),
            (f"{iid}.", owner_password),
            (f"{user}x", password),
            (f"{user}.{user[-8:]}", password),
            (f"{iid}\n", owner_password),
            (f"{iid}.g{user[-7:]}", password),
        ]:
            answer = await emqx.connect(username, secret)
            assert answer.verdict == DENY and answer.explicit, username
            for pubsub in ("publish", "subscribe"):
                assert emqx.acl(username, "t", action=pubsub) == DENY, username
        expected = IGNORE if action is UnknownUserAction.IGNORE else DENY
        assert (await emqx.connect("alice", "secret")).verdict == expected
