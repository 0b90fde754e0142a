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
    Rights,
    Username,
    claims_a_namespace,
    is_credential_id,
    new_credential_id,
    parse_username,
    rights_of,
    scoped_username,
)
from tenants.errors import InvalidRecord
from tenants.local_format import decode_record, encode_record
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
    cred_id="s0a1b2c3",
    label="dashboard",
    password_hash=HASH.replace("aGFz", "cmVh"),
    allow_publish=False,
    allow_subscribe=True,
    created_at=datetime(2025, 1, 2, tzinfo=UTC),
)
DEVICE = ScopedCredential(
    cred_id="pfff0000",
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


@pytest.mark.parametrize("rights", list(Rights))
def test_a_credential_id_starts_with_its_rights_letter(rights: Rights) -> None:
    """`<r><7 hex>`: the letter is no hex digit, so the id never reads as another form."""
    cred_id = new_credential_id(rights)
    assert len(cred_id) == 8 and cred_id[0] == rights.value and int(cred_id[1:], 16) >= 0
    assert rights_of(cred_id) is rights and is_credential_id(cred_id)
    assert Rights.of(rights.publish, rights.subscribe) is rights
    user = Username.parse(scoped_username(ID, cred_id))
    assert user == Username(f"{ID}.{cred_id}", ID, cred_id) and user.rights is rights


def test_rights_letters() -> None:
    assert (Rights.PUBLISH.publish, Rights.PUBLISH.subscribe) == (True, False)
    assert (Rights.SUBSCRIBE.publish, Rights.SUBSCRIBE.subscribe) == (False, True)
    assert (Rights.BOTH.publish, Rights.BOTH.subscribe) == (True, True)
    assert Rights.of(False, False) is None
    assert {r.value for r in Rights}.isdisjoint("0123456789abcdef")


def test_a_legacy_id_is_recognised_but_carries_no_rights() -> None:
    """8 hex digits, from before rights letters: records holding one stay readable (the
    credential can be listed and deleted), the hook refuses it."""
    assert is_credential_id("0a1b2c3d") and rights_of("0a1b2c3d") is None
    legacy = Username.parse(f"{ID}.0a1b2c3d")
    assert legacy is not None and legacy.cred_id == "0a1b2c3d" and legacy.rights is None
    owner = Username.parse(ID)
    assert owner == Username(ID, ID) and owner.rights is None
    for bad in ("a0a1b2c", "g0a1b2c3", "S0a1b2c3", "p0a1b2c", "p0a1b2c3d", "p0A1b2c3", ""):
        assert not is_credential_id(bad) and rights_of(bad) is None, bad


def test_usernames() -> None:
    cred_id = new_credential_id(Rights.SUBSCRIBE)
    assert parse_username(ID) == (ID, None)
    assert parse_username(scoped_username(ID, cred_id)) == (ID, cred_id)
    for other in (
        f"{ID}.0A1B2C3D",
        f"{ID}.0a1b2c3",
        f"{ID}.s0a1b2c30",
        f"{ID}-s0a1b2c3",
        f"{ID}.s0a1b2c3\n",
        f"{ID}zzz",
        "emqx-3a7f9c2b1d4e567",
        "",
    ):
        assert parse_username(other) is None, other
    assert TENANT.usernames() == (ID, f"{ID}.s0a1b2c3", f"{ID}.pfff0000")
    assert claims_a_namespace(f"{ID}zzz") and claims_a_namespace(f"{ID}.x")
    assert not claims_a_namespace("alice") and not claims_a_namespace("emqx-3A7F9C2B1D4E5678")
    assert "password_hash" not in repr(READER) and HASH not in repr(TENANT)


# -- the Secret ---------------------------------------------------------------------------


def test_the_secret_holds_one_data_key_per_credential() -> None:
    data = tenant_to_secret(TENANT, "zero")["data"]
    assert set(data) == {"password-hash", "credential.s0a1b2c3", "credential.pfff0000"}
    assert base64.b64decode(data["credential.s0a1b2c3"]).decode() == (
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
    "path":"/data/credential.s0a1b2c3"}]'` leaves behind."""
    secret = tenant_to_secret(TENANT, "zero")
    del secret["data"]["credential.s0a1b2c3"]
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
    ("credential.s0a1b2c3", "not base64!"),
    ("credential.s0a1b2c3", _b64("{not json")),
    ("credential.s0a1b2c3", _b64("[1, 2]")),
    ("credential.s0a1b2c3", _entry(label=_DROP)),
    ("credential.s0a1b2c3", _entry(label="")),
    ("credential.s0a1b2c3", _entry(label="-bad-")),
    ("credential.s0a1b2c3", _entry(password_hash="$2b$bcrypt")),
    ("credential.s0a1b2c3", _entry(allow_publish="yes")),
    ("credential.s0a1b2c3", _entry(allow_subscribe=_DROP)),
    ("credential.s0a1b2c3", _entry(created_at="2025-01-02T00:00:00")),
    ("credential.0A1B2C3D", _entry()),
    ("credential.", _entry()),
    ("credential.s0a1b2c30", _entry()),
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
            "cred_id": "s0a1b2c3",
            "label": "dashboard",
            "password_hash": READER.password_hash,
            "allow_publish": False,
            "allow_subscribe": True,
            "created_at": "2025-01-02T00:00:00Z",
        },
        {
            "cred_id": "pfff0000",
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
    ("credentials", {"cred_id": "s0a1b2c3"}),
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
