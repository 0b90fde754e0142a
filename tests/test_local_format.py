"""The embedded store's JSON row: whatever a row holds, reading gives the tenant or
InvalidRecord naming the field, never anything else and never the hash."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenants import local_format
from tenants.errors import InvalidRecord
from tenants.local_format import (
    SUPERSEDED_HASH,
    decode_change,
    decode_record,
    encode_change,
    encode_record,
    fingerprint,
)
from tenants.record import ScopedCredential, Tenant
from tests import hostile_values
from tests.hostile_values import HASH

ID = "emqx-3a7f9c2b1d4e5678"
CREDENTIAL = ScopedCredential(
    cred_id="0123abcd",
    label="dash",
    password_hash=HASH.replace("aGFz", "bGFz"),
    allow_publish=True,
    allow_subscribe=False,
    created_at=datetime(2025, 1, 2, tzinfo=UTC),
)
TENANT = Tenant(
    instance_id=ID,
    password_hash=HASH,
    created_at=datetime(2025, 1, 1, tzinfo=UTC),
    expires_at=datetime(2025, 1, 8, tzinfo=UTC),
    tag="blue",
    ip_hash="abc",
    paused=True,
    credentials=(CREDENTIAL,),
    revision="7",
)
ROW: dict[str, Any] = json.loads(encode_record(TENANT))


def row(**changes: Any) -> str:
    return json.dumps({**ROW, **changes})


def test_round_trip_and_exact_shape() -> None:
    assert decode_record(ID, encode_record(TENANT), 7) == TENANT
    assert json.loads(encode_record(TENANT)) == {
        "password_hash": HASH,
        "created_at": "2025-01-01T00:00:00Z",
        "expires_at": "2025-01-08T00:00:00Z",
        "tag": "blue",
        "ip_hash": "abc",
        "paused": True,
        "credentials": [
            {
                "cred_id": "0123abcd",
                "label": "dash",
                "password_hash": CREDENTIAL.password_hash,
                "allow_publish": True,
                "allow_subscribe": False,
                "created_at": "2025-01-02T00:00:00Z",
            }
        ],
    }


def test_defaults_for_the_optional_fields() -> None:
    bare = {k: ROW[k] for k in ("password_hash", "created_at", "expires_at")}
    plain = replace(TENANT, tag="", ip_hash="", paused=False, credentials=())
    assert decode_record(ID, json.dumps(bare), 7) == plain


_BAD = [
    ("not JSON", "{", "not JSON"),
    ("nested past the stack", hostile_values.deep_json(100_000), "nested too deeply"),
    ("an array", "[]", "not a JSON object"),
    ("no hash", row(password_hash=None), "password_hash"),
    ("plain hash", row(password_hash="secret"), "password_hash"),
    (
        "no created_at",
        json.dumps({k: v for k, v in ROW.items() if k != "created_at"}),
        "created_at",
    ),
    ("numeric time", row(expires_at=20250108), "expires_at"),
    ("past UTC", row(expires_at="9999-12-31T23:59:59-01:00"), "expires_at"),
    ("naive time", row(created_at="2025-01-01T00:00:00"), "created_at"),
    ("tag type", row(tag=7), "tag"),
    ("bad tag", row(tag="-x-"), "tag is not a valid tag"),
    ("ip_hash type", row(ip_hash=None), "ip_hash"),
    ("paused string", row(paused="true"), "paused"),
    ("credentials map", row(credentials={}), "credentials is not a list"),
    (
        "credential time",
        row(credentials=[{**ROW["credentials"][0], "created_at": "x"}]),
        "credentials[0]",
    ),
]


@pytest.mark.parametrize(("why", "text", "named"), _BAD, ids=[b[0] for b in _BAD])
def test_a_bad_row_is_named_and_never_shows_the_hash(why: str, text: str, named: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        decode_record(ID, text, 7)
    message = str(caught.value)
    assert named in message and ID in message
    assert HASH not in message and CREDENTIAL.password_hash not in message


@pytest.mark.parametrize(
    "key", [None, 7, b"emqx-3a7f9c2b1d4e5678", "emqx-3A7F9C2B1D4E5678", "x" * 500]
)
def test_a_row_key_that_is_no_instance_id_is_unreadable(key: object) -> None:
    with pytest.raises(InvalidRecord, match="not an instance id") as caught:
        decode_record(key, encode_record(TENANT), 7)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize("value", [None, 7, b"{}", 1.5])
def test_a_record_column_that_is_not_text_is_unreadable(value: object) -> None:
    with pytest.raises(InvalidRecord, match="not text"):
        decode_record(ID, value, 7)


def test_an_unforeseen_failure_is_still_only_unreadable(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(value: object) -> object:
        raise MemoryError

    monkeypatch.setattr(local_format, "load_json", broken)
    with pytest.raises(InvalidRecord, match=f"{ID}: unreadable \\(MemoryError\\)"):
        decode_record(ID, encode_record(TENANT), 7)


_FIELDS = [*ROW, "credentials.0"]


def _read_or_refuse(text: object) -> Tenant | None:
    try:
        tenant = decode_record(ID, text, 7)
    except InvalidRecord as exc:
        message = str(exc)
        assert HASH not in message
        return None
    assert isinstance(tenant, Tenant)
    return tenant


@hostile_values.BOUNDED
@given(field=st.sampled_from(_FIELDS), value=hostile_values.json_values())
def test_any_json_value_in_any_field_is_read_or_refused(field: str, value: Any) -> None:
    edited = json.loads(json.dumps(ROW))
    if field == "credentials.0":
        edited["credentials"][0] = value
    else:
        edited[field] = value
    _read_or_refuse(json.dumps(edited))


@hostile_values.BOUNDED
@given(
    field=st.sampled_from(["created_at", "expires_at", "credentials.created_at"]),
    text=hostile_values.time_texts(),
)
def test_any_time_is_read_or_refused(field: str, text: str) -> None:
    edited = json.loads(json.dumps(ROW))
    if field == "credentials.created_at":
        edited["credentials"][0]["created_at"] = text
    else:
        edited[field] = text
    tenant = _read_or_refuse(json.dumps(edited))
    if tenant is not None:  # a time UTC holds: writing it back reads the same
        assert decode_record(ID, encode_record(tenant), 7).expires_at == tenant.expires_at.replace(
            microsecond=0
        )


@hostile_values.BOUNDED
@given(text=hostile_values.json_texts())
def test_any_text_is_read_or_refused(text: str) -> None:
    _read_or_refuse(text)


def test_rows_are_compact_json() -> None:
    assert ": " not in encode_record(TENANT) and ", " not in encode_record(TENANT)


def test_a_bad_credential_entry_is_named_exactly() -> None:
    entry = ROW["credentials"][0]
    for entries in (["x"], [{**entry, "cred_id": 7}], [entry, entry]):
        n = len(entries) - 1
        with pytest.raises(InvalidRecord) as caught:
            decode_record(ID, row(credentials=entries), 7)
        assert str(caught.value) == (
            f"{ID}: credentials[{n}]: cred_id is missing, not a string or repeated"
        )


def test_a_foreign_key_is_shown_shortened() -> None:
    for key, shown in ((7, "7"), ("k" * 90, "k" * 80)):
        with pytest.raises(InvalidRecord) as caught:
            decode_record(key, encode_record(TENANT), 7)
        assert str(caught.value) == f"record key {shown!r} is not an instance id"


# -- the change log's form: hashes as fingerprints ----------------------------------------


def test_a_change_holds_fingerprints_not_hashes() -> None:
    change = encode_change(TENANT)
    assert "$argon2" not in change and ": " not in change
    data = json.loads(change)
    assert data["password_hash"] == fingerprint(HASH)
    assert data["credentials"][0]["password_hash"] == fingerprint(CREDENTIAL.password_hash)
    assert fingerprint(HASH) != fingerprint(CREDENTIAL.password_hash)
    assert fingerprint(HASH).startswith("fingerprint:") and len(fingerprint(HASH)) == 28
    assert {k: v for k, v in data.items() if k != "credentials"} == {
        **{k: v for k, v in ROW.items() if k != "credentials"},
        "password_hash": fingerprint(HASH),
    }


def test_a_change_without_credentials() -> None:
    bare = replace(TENANT, credentials=())
    assert "credentials" not in json.loads(encode_change(bare))
    assert decode_change(ID, encode_change(bare), 7, bare) == bare


def test_a_change_gets_the_current_hashes_back_where_they_match() -> None:
    change = encode_change(TENANT)
    assert decode_change(ID, change, 5, TENANT) == replace(TENANT, revision="5")
    rotated = replace(TENANT, password_hash=HASH.replace("aGFz", "cGFz"))
    read = decode_change(ID, change, 5, rotated)
    assert read.password_hash == SUPERSEDED_HASH  # changed since: never verifies
    assert read.credentials[0].password_hash == CREDENTIAL.password_hash
    gone = decode_change(ID, change, 5, None)
    assert gone.password_hash == SUPERSEDED_HASH
    assert gone.credentials[0].password_hash == SUPERSEDED_HASH
    assert decode_record(ID, encode_record(TENANT), 7) == TENANT  # rows keep real hashes


def test_a_change_that_cannot_be_read_is_unreadable() -> None:
    with pytest.raises(InvalidRecord, match="record is not a JSON object"):
        decode_change(ID, "[]", 5, TENANT)
    for text in ("[]", "{", json.dumps({**json.loads(encode_change(TENANT)), "tag": 7})):
        with pytest.raises(InvalidRecord):
            decode_change(ID, text, 5, TENANT)
    plain = json.dumps({**json.loads(encode_change(TENANT)), "password_hash": "plain"})
    with pytest.raises(InvalidRecord, match="password_hash"):
        decode_change(ID, plain, 5, TENANT)
