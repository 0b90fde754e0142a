"""One scoped credential as JSON: exact shape, strict reading, nothing but ValueError."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given

from tenants.credential_format import (
    SECRET_KEY_PREFIX,
    credential_fields,
    credential_from_fields,
    credential_from_json,
    credential_json,
    is_valid_label,
    load_json,
    secret_key,
)
from tenants.record import ScopedCredential
from tests import hostile_values
from tests.hostile_values import HASH

CREDENTIAL = ScopedCredential(
    cred_id="0123abcd",
    label="dash",
    password_hash=HASH,
    allow_publish=False,
    allow_subscribe=True,
    created_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
)
FIELDS: dict[str, Any] = {
    "label": "dash",
    "password_hash": HASH,
    "allow_publish": False,
    "allow_subscribe": True,
    "created_at": "2025-01-02T03:04:05Z",
}


def test_exact_shape() -> None:
    assert SECRET_KEY_PREFIX == "credential."
    assert secret_key("0123abcd") == "credential.0123abcd"
    assert credential_fields(CREDENTIAL) == FIELDS
    assert credential_json(CREDENTIAL) == json.dumps(FIELDS, separators=(",", ":"))
    assert " " not in credential_json(CREDENTIAL)


def test_round_trip_and_unknown_fields_ignored() -> None:
    assert credential_from_json("0123abcd", credential_json(CREDENTIAL)) == CREDENTIAL
    assert credential_from_fields("0123abcd", {**FIELDS, "note": 1}) == CREDENTIAL
    both = {**FIELDS, "allow_publish": True, "allow_subscribe": False}
    read = credential_from_fields("0123abcd", both)
    assert (read.allow_publish, read.allow_subscribe) == (True, False)


@pytest.mark.parametrize("label", ["a", "x" * 63, "a.b_c-d", "A9"])
def test_valid_labels(label: str) -> None:
    assert is_valid_label(label)
    assert credential_from_fields("0123abcd", {**FIELDS, "label": label}).label == label


@pytest.mark.parametrize("label", ["", "x" * 64, "-a", "a-", "a b", "é"])
def test_invalid_labels(label: str) -> None:
    assert not is_valid_label(label)


_BAD: list[tuple[str, Any, str]] = [
    ("cred_id", "0123ABCD", "credential id"),
    ("cred_id", "0123abc", "credential id"),
    ("data", ["not", "an", "object"], "not a JSON object"),
    ("label", None, "label"),
    ("label", 7, "label"),
    ("label", "", "label"),
    ("label", "x" * 64, "label"),
    ("password_hash", None, "password_hash"),
    ("password_hash", "$2b$bcrypt", "password_hash"),
    ("allow_publish", 1, "allow_publish"),
    ("allow_subscribe", None, "allow_subscribe"),
    ("allow_subscribe", "true", "allow_subscribe"),
    ("created_at", None, "created_at"),
    ("created_at", 20250102, "created_at"),
    ("created_at", "2025-01-02T03:04:05", "created_at"),
    ("created_at", "9999-12-31T23:59:59-01:00", "created_at"),
]


@pytest.mark.parametrize(("field", "value", "named"), _BAD)
def test_each_field_is_checked(field: str, value: Any, named: str) -> None:
    cred_id, data = "0123abcd", dict(FIELDS)
    if field == "cred_id":
        cred_id = value
    elif field == "data":
        data = value
    else:
        data[field] = value
    with pytest.raises(ValueError, match=named) as caught:
        credential_from_fields(cred_id, data)
    assert HASH not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{", "not JSON"),
        ("1" * 5000, "not JSON"),  # longer than int() takes
        (hostile_values.deep_json(100_000), "nested too deeply"),
    ],
)
def test_json_that_cannot_be_loaded_is_a_value_error(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        load_json(text)
    with pytest.raises(ValueError, match=why):
        credential_from_json("0123abcd", text)


def test_moderate_nesting_loads() -> None:
    assert load_json(hostile_values.deep_json(50)) == json.loads(hostile_values.deep_json(50))


@hostile_values.BOUNDED
@given(text=hostile_values.json_texts())
def test_any_text_is_a_credential_or_a_value_error(text: str) -> None:
    try:
        credential = credential_from_json("0123abcd", text)
    except ValueError as exc:
        message = str(exc)
        assert HASH not in message
        return
    assert isinstance(credential, ScopedCredential)


_MESSAGES = {
    "cred_id": "the credential id is not a rights letter and 7 lowercase hex digits",
    "data": "is not a JSON object",
    "label": "label is missing or not a valid label",
    "password_hash": "password_hash is not an argon2 PHC string",
    "allow_publish": "allow_publish and allow_subscribe must be true or false",
    "allow_subscribe": "allow_publish and allow_subscribe must be true or false",
    "created_at": "created_at is missing or not RFC 3339 with a timezone",
}


@pytest.mark.parametrize(("field", "value", "named"), _BAD)
def test_messages_are_exact(field: str, value: Any, named: str) -> None:
    cred_id, data = "0123abcd", dict(FIELDS)
    if field == "cred_id":
        cred_id = value
    elif field == "data":
        data = value
    else:
        data[field] = value
    with pytest.raises(ValueError, match=named) as caught:
        credential_from_fields(cred_id, data)
    assert str(caught.value) == _MESSAGES[field]


def test_load_json_messages_are_exact() -> None:
    for text, message in (
        ("{", "is not JSON"),
        (hostile_values.deep_json(100_000), "is JSON nested too deeply"),
    ):
        with pytest.raises(ValueError, match="JSON") as caught:
            load_json(text)
        assert str(caught.value) == message
