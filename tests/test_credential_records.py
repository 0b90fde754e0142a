"""Scoped credentials on the record: the Secret format (one data key each), the embedded
store's JSON (a list), round trips through both stores, and refusals that name the entry
but never the hash."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from tenants.credentials import (
    claims_a_namespace,
    new_credential_id,
    parse_username,
    scoped_username,
)
from tenants.errors import InvalidRecord
from tenants.local_store import decode_record, encode_record
from tenants.operations import modify, remove_credential
from tenants.record import ScopedCredential, Tenant, in_order
from tenants.secret_format import secret_to_tenant, tenant_to_secret
from tenants.store import TenantStore
from tests.conftest import make_credential, make_tenant

HASH = (
    "$argon2id$v=19$m=2048,t=1,p=1$c29tZXNhbHRzb21lc2FsdA"
    "$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
)
ID = "emqx-3a7f9c2b1d4e5678"
READER = ScopedCredential(
    cred_id="0a1b2c3d",
    label="dashboard",
    password_hash=HASH.replace("aGFz", "cmVh"),
    allow_publish=False,
    allow_subscribe=True,
    created_at=datetime(2025, 1, 2, tzinfo=UTC),
)
DEVICE = ScopedCredential(
    cred_id="ffff0000",
    label="sensor.1",
    password_hash=HASH.replace("aGFz", "ZGV2"),
    allow_publish=True,
    allow_subscribe=False,
    created_at=datetime(2025, 1, 3, tzinfo=UTC),
)
TENANT = Tenant(
    instance_id=ID,
    password_hash=HASH,
    created_at=datetime(2025, 1, 1, 12, 0, tzinfo=UTC),
    expires_at=datetime(2025, 1, 8, 12, 0, tzinfo=UTC),
    credentials=(READER, DEVICE),
    revision="42",
)
SECRET_HASHES = [HASH, READER.password_hash, DEVICE.password_hash]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- usernames --------------------------------------------------------------------------


def test_usernames() -> None:
    cred_id = new_credential_id()
    assert len(cred_id) == 8 and int(cred_id, 16) >= 0
    assert parse_username(ID) == (ID, None)
    assert parse_username(scoped_username(ID, cred_id)) == (ID, cred_id)
    for other in (
        f"{ID}.0A1B2C3D",
        f"{ID}.0a1b2c3",
        f"{ID}.0a1b2c3d0",
        f"{ID}-0a1b2c3d",
        f"{ID}.0a1b2c3d\n",
        f"{ID}zzz",
        "emqx-3a7f9c2b1d4e567",
        "",
    ):
        assert parse_username(other) is None, other
    assert TENANT.usernames() == (ID, f"{ID}.0a1b2c3d", f"{ID}.ffff0000")
    assert claims_a_namespace(f"{ID}zzz") and claims_a_namespace(f"{ID}.x")
    assert not claims_a_namespace("alice") and not claims_a_namespace("emqx-3A7F9C2B1D4E5678")
    assert "password_hash" not in repr(READER) and HASH not in repr(TENANT)


# -- the Secret ---------------------------------------------------------------------------


def test_the_secret_holds_one_data_key_per_credential() -> None:
    data = tenant_to_secret(TENANT, "zero")["data"]
    assert set(data) == {"password-hash", "credential.0a1b2c3d", "credential.ffff0000"}
    assert base64.b64decode(data["credential.0a1b2c3d"]).decode() == (
        '{"label":"dashboard","password_hash":"' + READER.password_hash + '",'
        '"allow_publish":false,"allow_subscribe":true,"created_at":"2025-01-02T00:00:00Z"}'
    )


def test_secret_round_trip_in_canonical_order() -> None:
    secret = tenant_to_secret(TENANT, "zero")
    secret["data"] = dict(reversed(list(secret["data"].items())))  # a map has no order
    assert secret_to_tenant(secret) == TENANT
    without = tenant_to_secret(replace(TENANT, credentials=()), "zero")
    assert set(without["data"]) == {"password-hash"}
    assert secret_to_tenant(without).credentials == ()


def test_removing_a_data_key_revokes_that_credential() -> None:
    """What `kubectl patch secret ID --type=json -p '[{"op":"remove",
    "path":"/data/credential.0a1b2c3d"}]'` leaves behind."""
    secret = tenant_to_secret(TENANT, "zero")
    del secret["data"]["credential.0a1b2c3d"]
    assert secret_to_tenant(secret).credentials == (DEVICE,)


def _entry(**changes: Any) -> str:
    fields: dict[str, Any] = {
        "label": "dashboard",
        "password_hash": READER.password_hash,
        "allow_publish": False,
        "allow_subscribe": True,
        "created_at": "2025-01-02T00:00:00Z",
    }
    fields.update(changes)
    return _b64(json.dumps({k: v for k, v in fields.items() if v is not _DROP}))


_DROP = object()
_BAD_SECRET_ENTRIES = [
    ("credential.0a1b2c3d", "not base64!"),
    ("credential.0a1b2c3d", _b64("{not json")),
    ("credential.0a1b2c3d", _b64("[1, 2]")),
    ("credential.0a1b2c3d", _entry(label=_DROP)),
    ("credential.0a1b2c3d", _entry(label="")),
    ("credential.0a1b2c3d", _entry(label="-bad-")),
    ("credential.0a1b2c3d", _entry(password_hash="$2b$bcrypt")),
    ("credential.0a1b2c3d", _entry(allow_publish="yes")),
    ("credential.0a1b2c3d", _entry(allow_subscribe=_DROP)),
    ("credential.0a1b2c3d", _entry(created_at="2025-01-02T00:00:00")),
    ("credential.0A1B2C3D", _entry()),
    ("credential.", _entry()),
    ("credential.0a1b2c3d0", _entry()),
]


@pytest.mark.parametrize(("key", "value"), _BAD_SECRET_ENTRIES)
def test_a_bad_secret_entry_is_named_and_no_hash_shown(key: str, value: str) -> None:
    secret = tenant_to_secret(replace(TENANT, credentials=(DEVICE,)), "zero")
    secret["data"][key] = value
    with pytest.raises(InvalidRecord) as caught:
        secret_to_tenant(secret)
    message = str(caught.value)
    assert f"data.{key}" in message and ID in message
    assert not any(h in message for h in SECRET_HASHES)
    assert "c29tZXNhbHRzb21lc2FsdA" not in message


def test_other_data_keys_are_ignored() -> None:
    secret = tenant_to_secret(TENANT, "zero")
    secret["data"]["notes"] = _b64("hand-written")
    assert secret_to_tenant(secret) == TENANT


# -- the embedded store's JSON ---------------------------------------------------------------


def test_local_record_lists_the_credentials() -> None:
    record = json.loads(encode_record(TENANT))
    assert record["credentials"] == [
        {
            "cred_id": "0a1b2c3d",
            "label": "dashboard",
            "password_hash": READER.password_hash,
            "allow_publish": False,
            "allow_subscribe": True,
            "created_at": "2025-01-02T00:00:00Z",
        },
        {
            "cred_id": "ffff0000",
            "label": "sensor.1",
            "password_hash": DEVICE.password_hash,
            "allow_publish": True,
            "allow_subscribe": False,
            "created_at": "2025-01-03T00:00:00Z",
        },
    ]
    assert "credentials" not in json.loads(encode_record(replace(TENANT, credentials=())))
    assert decode_record(ID, encode_record(TENANT), 42) == TENANT
    record["credentials"].reverse()
    assert decode_record(ID, json.dumps(record), 42) == TENANT


def _local_with(entries: Any) -> str:
    record = json.loads(encode_record(replace(TENANT, credentials=())))
    record["credentials"] = entries
    return json.dumps(record)


_GOOD = json.loads(encode_record(TENANT))["credentials"][0]
_BAD_LOCAL = [
    ("credentials", {"cred_id": "0a1b2c3d"}),
    ("credentials[0]", ["not an object"]),
    ("credentials[0]", [{**_GOOD, "cred_id": None}]),
    ("credentials[1]", [_GOOD, _GOOD]),
    ("credentials[0]", [{**_GOOD, "cred_id": "XYZ"}]),
    ("credentials[0]", [{**_GOOD, "password_hash": "plain"}]),
    ("credentials[0]", [{**_GOOD, "allow_publish": 1}]),
    ("credentials[0]", [{**_GOOD, "label": "x" * 64}]),
]


@pytest.mark.parametrize(("named", "entries"), _BAD_LOCAL)
def test_a_bad_local_entry_is_named_and_no_hash_shown(named: str, entries: Any) -> None:
    with pytest.raises(InvalidRecord) as caught:
        decode_record(ID, _local_with(entries), 7)
    message = str(caught.value)
    assert named in message and ID in message
    assert not any(h in message for h in SECRET_HASHES)


# -- both stores ------------------------------------------------------------------------------


async def test_credentials_survive_both_stores(store: TenantStore) -> None:
    reader = make_credential(allow_publish=False, allow_subscribe=True).credential
    device = make_credential(label="device").credential
    tenant = replace(make_tenant().tenant, credentials=in_order((reader, device)))
    created = await store.create(tenant)
    read = await store.get(tenant.instance_id)
    assert read == created and set(read.credentials) == {reader, device}
    assert (await store.list()).tenants == (created,)
    updated = await modify(store, tenant.instance_id, remove_credential(reader.cred_id))
    again = await store.get(tenant.instance_id)
    assert again == updated and again.credentials == (device,)
