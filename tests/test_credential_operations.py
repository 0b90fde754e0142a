"""Scoped credentials as record changes (pure), and their creation on both stores."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

import tenants.operations as operations
from manager.settings import ManagerSettings
from tenants.credentials import Rights
from tenants.errors import ConfigError, NotFound
from tenants.hashing import verify_password
from tenants.operations import (
    CredentialIdTaken,
    CredentialNotFound,
    CredentialRefused,
    InstanceExpired,
    add_credential,
    check_credential_request,
    create_credential,
    modify,
    remove_credential,
    rotate,
)
from tenants.record import utc_now
from tenants.store import TenantStore
from tests.conftest import make_credential, make_tenant
from tests.manager_client import BASE_ENV


def test_a_credential_needs_a_label_and_a_right() -> None:
    check_credential_request("reader", False, True)
    check_credential_request("a", True, False)
    for label in ("", "-x", "x" * 64, "a b", "ü"):
        with pytest.raises(CredentialRefused, match="label"):
            check_credential_request(label, True, True)
    with pytest.raises(CredentialRefused, match="at least one"):
        check_credential_request("nothing", False, False)


def test_add_and_remove_are_pure_changes() -> None:
    now = utc_now()
    tenant = make_tenant().tenant
    first, second = make_credential().credential, make_credential().credential
    one = add_credential(first, now, 2)(tenant)
    two = add_credential(second, now, 2)(one)
    assert {c.cred_id for c in two.credentials} == {first.cred_id, second.cred_id}
    assert tenant.credentials == ()  # the input is untouched
    with pytest.raises(CredentialRefused, match="MAX_CREDENTIALS_PER_INSTANCE = 2"):
        add_credential(make_credential().credential, now, 2)(two)
    with pytest.raises(CredentialIdTaken):
        add_credential(replace(second, label="again"), now, 5)(two)
    expired = replace(tenant, expires_at=now - timedelta(seconds=1))
    with pytest.raises(InstanceExpired):
        add_credential(first, now, 2)(expired)
    assert remove_credential(first.cred_id)(two).credentials == (second,)
    gone = remove_credential(first.cred_id)(replace(two, expires_at=expired.expires_at))
    assert gone.credentials == (second,)  # taking access away is allowed after expiry
    with pytest.raises(CredentialNotFound):
        remove_credential("00000000")(two)


async def test_create_credential_on_both_stores(
    store: TenantStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await store.create(make_tenant().tenant)
    taken = make_credential(allow_publish=False, allow_subscribe=True).credential
    await modify(store, tenant.instance_id, add_credential(taken, utc_now(), 20))
    ids = iter([taken.cred_id, "s000beef", "s000cafe"])  # the first id minted collides
    asked: list[Rights] = []

    def mint(rights: Rights) -> str:
        asked.append(rights)
        return next(ids)

    monkeypatch.setattr(operations, "new_credential_id", mint)
    stored, credential, password = await create_credential(
        store,
        tenant.instance_id,
        label="reader",
        allow_publish=False,
        allow_subscribe=True,
        now=utc_now(),
        max_credentials=20,
    )
    assert credential.cred_id == "s000beef"
    assert asked == [Rights.SUBSCRIBE, Rights.SUBSCRIBE]  # minted for the rights asked
    assert stored.credential("s000beef") == credential
    assert verify_password(credential.password_hash, password)
    assert stored == await store.get(tenant.instance_id)
    # Rotating the instance's own password leaves the scoped credentials alone.
    rotated, _ = await rotate(store, tenant.instance_id, utc_now())
    assert rotated.credentials == stored.credentials
    with pytest.raises(NotFound):
        await create_credential(
            store,
            "emqx-0000000000000000",
            label="x",
            allow_publish=True,
            allow_subscribe=True,
            now=utc_now(),
            max_credentials=20,
        )


def test_max_credentials_setting() -> None:
    assert ManagerSettings.from_environ(BASE_ENV).max_credentials == 20
    env = {**BASE_ENV, "MAX_CREDENTIALS_PER_INSTANCE": "3"}
    assert ManagerSettings.from_environ(env).max_credentials == 3
    for bad in ("0", "1001", "x"):
        with pytest.raises(ConfigError, match="MAX_CREDENTIALS_PER_INSTANCE"):
            ManagerSettings.from_environ({**BASE_ENV, "MAX_CREDENTIALS_PER_INSTANCE": bad})
