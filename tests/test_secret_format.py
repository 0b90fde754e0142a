"""The tenant record as a Secret: the exact shape operators and the ExHook rely on."""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenants import secret_format
from tenants.errors import InvalidRecord
from tenants.record import ScopedCredential, Tenant
from tenants.secret_format import (
    CREATED_AT_ANNOTATION,
    EXPIRES_AT_ANNOTATION,
    IP_HASH_LABEL,
    LABEL_SELECTOR,
    PASSWORD_HASH_KEY,
    PAUSED_ANNOTATION,
    TAG_LABEL,
    TENANT_LABEL,
    secret_to_tenant,
    tenant_to_secret,
)
from tests import hostile_values

HASH = (
    "$argon2id$v=19$m=2048,t=1,p=1$c29tZXNhbHRzb21lc2FsdA"
    "$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
)
HASH_B64 = base64.b64encode(HASH.encode()).decode()
PADDED_B64 = base64.b64encode((HASH + "ab").encode()).decode()  # ends in one "="


def tenant(**changes: Any) -> Tenant:
    base = Tenant(
        instance_id="emqx-3a7f9c2b1d4e5678",
        password_hash=HASH,
        created_at=datetime(2025, 1, 1, 12, 0, tzinfo=UTC),
        expires_at=datetime(2025, 1, 8, 12, 0, tzinfo=UTC),
        revision="42",
    )
    return replace(base, **changes)


def stored(**changes: Any) -> dict[str, Any]:
    """The Secret as the API server would return it."""
    secret = tenant_to_secret(tenant(**changes), "zero")
    secret["metadata"]["uid"] = "5b1c0a3e-0000-4000-8000-000000000000"
    return secret


def test_the_manifest_is_exactly_the_documented_shape() -> None:
    assert tenant_to_secret(tenant(tag="blue", ip_hash="abc123", paused=True), "zero") == {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": "emqx-3a7f9c2b1d4e5678",
            "namespace": "zero",
            "resourceVersion": "42",
            "labels": {
                "app.kubernetes.io/managed-by": "zero-emqx",
                "zero-emqx.io/tenant": "true",
                "zero-emqx.io/tag": "blue",
                "zero-emqx.io/ip-hash": "abc123",
            },
            "annotations": {
                "zero-emqx.io/created-at": "2025-01-01T12:00:00Z",
                "zero-emqx.io/expires-at": "2025-01-08T12:00:00Z",
                "zero-emqx.io/paused": "true",
            },
        },
        "data": {"password-hash": HASH_B64},
    }
    assert LABEL_SELECTOR == "zero-emqx.io/tenant=true"


@pytest.mark.parametrize(
    "changes",
    [{}, {"tag": "blue"}, {"ip_hash": "abc"}, {"paused": True}, {"tag": "a.b_c-d", "paused": True}],
)
def test_round_trip(changes: dict[str, Any]) -> None:
    assert secret_to_tenant(stored(**changes)) == tenant(**changes)


def test_optional_labels_and_annotations_only_when_set() -> None:
    metadata = tenant_to_secret(tenant(revision=""), "zero")["metadata"]
    assert TAG_LABEL not in metadata["labels"]
    assert IP_HASH_LABEL not in metadata["labels"]
    assert PAUSED_ANNOTATION not in metadata["annotations"]
    assert "resourceVersion" not in metadata


@pytest.mark.parametrize(("text", "paused"), [(None, False), ("false", False), ("true", True)])
def test_paused_annotation(text: str | None, paused: bool) -> None:
    secret = stored()
    if text is not None:
        secret["metadata"]["annotations"][PAUSED_ANNOTATION] = text
    assert secret_to_tenant(secret).paused is paused


def _set(secret: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    *parents, last = path
    target = secret
    for key in parents:
        target = target[key]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value


_DELETE = object()
_INVALID = [
    (("metadata",), _DELETE, "metadata"),
    (("metadata", "name"), "emqx-NOT-HEX", "metadata.name"),
    (("metadata", "name"), "some-other-secret", "metadata.name"),
    (("metadata", "labels"), ["not", "a", "map"], "metadata.labels"),
    (("metadata", "labels", TENANT_LABEL), "false", TENANT_LABEL),
    (("metadata", "labels", TAG_LABEL), "-bad-", TAG_LABEL),
    (("metadata", "annotations"), "x", "metadata.annotations"),
    (("metadata", "annotations", CREATED_AT_ANNOTATION), _DELETE, CREATED_AT_ANNOTATION),
    (("metadata", "annotations", CREATED_AT_ANNOTATION), "yesterday", CREATED_AT_ANNOTATION),
    (
        ("metadata", "annotations", EXPIRES_AT_ANNOTATION),
        "2025-01-08T12:00:00",
        EXPIRES_AT_ANNOTATION,
    ),
    (("metadata", "annotations", PAUSED_ANNOTATION), "yes", PAUSED_ANNOTATION),
    (("metadata", "annotations", PAUSED_ANNOTATION), "True", PAUSED_ANNOTATION),
    # UTC cannot hold it: OverflowError in astimezone before the fix.
    (
        ("metadata", "annotations", EXPIRES_AT_ANNOTATION),
        "9999-12-31T23:59:59-01:00",
        EXPIRES_AT_ANNOTATION,
    ),
    (
        ("metadata", "annotations", CREATED_AT_ANNOTATION),
        "0001-01-01T00:00:00+00:30",
        CREATED_AT_ANNOTATION,
    ),
    # Not RFC 3339, though datetime.fromisoformat takes them.
    (("metadata", "annotations", EXPIRES_AT_ANNOTATION), "20250108T120000Z", EXPIRES_AT_ANNOTATION),
    (
        ("metadata", "annotations", EXPIRES_AT_ANNOTATION),
        "2025-01-08 12:00Z",
        EXPIRES_AT_ANNOTATION,
    ),
    # Label and annotation values must be strings (the API server's rule too).
    (("metadata", "labels", TENANT_LABEL), True, "metadata.labels"),
    (("metadata", "labels", TAG_LABEL), 7, "metadata.labels"),
    (("metadata", "annotations", PAUSED_ANNOTATION), True, "metadata.annotations"),
    (("metadata", "annotations", EXPIRES_AT_ANNOTATION), None, "metadata.annotations"),
    (("metadata", "labels", TENANT_LABEL), _DELETE, TENANT_LABEL),
    (("metadata", "labels"), _DELETE, TENANT_LABEL),
    (("metadata", "labels"), None, TENANT_LABEL),
    (("metadata", "annotations"), None, CREATED_AT_ANNOTATION),
    (("metadata", "name"), None, "metadata.name"),
    (("metadata", "resourceVersion"), 7, "metadata.resourceVersion"),
    (("data",), _DELETE, f"data.{PASSWORD_HASH_KEY}"),
    (("data",), "x", "data"),
    (("data", PASSWORD_HASH_KEY), _DELETE, f"data.{PASSWORD_HASH_KEY}"),
    (("data", PASSWORD_HASH_KEY), HASH, f"data.{PASSWORD_HASH_KEY}"),  # not base64
    (("data", PASSWORD_HASH_KEY), HASH_B64[:-3], f"data.{PASSWORD_HASH_KEY}"),
    (("data", PASSWORD_HASH_KEY), 7, f"data.{PASSWORD_HASH_KEY}"),
    # base64 that is not what the API server writes: junk characters, missing padding,
    # the URL-safe alphabet, trailing bits that are not zero.
    (("data", PASSWORD_HASH_KEY), HASH_B64[:10] + "!" + HASH_B64[10:], f"data.{PASSWORD_HASH_KEY}"),
    (("data", PASSWORD_HASH_KEY), PADDED_B64.rstrip("="), f"data.{PASSWORD_HASH_KEY}"),
    (("data", PASSWORD_HASH_KEY), HASH_B64 + "\n", f"data.{PASSWORD_HASH_KEY}"),
    (
        ("data", PASSWORD_HASH_KEY),
        base64.b64encode(HASH.encode() + b"\xfb\xff").decode().replace("+", "-").replace("/", "_"),
        f"data.{PASSWORD_HASH_KEY}",
    ),
    (
        ("data", PASSWORD_HASH_KEY),
        base64.b64encode(b"\xff\xfe").decode(),
        f"data.{PASSWORD_HASH_KEY}",
    ),
    (
        ("data", PASSWORD_HASH_KEY),
        base64.b64encode(HASH.replace("argon2id", "bcrypt").encode()).decode(),
        f"data.{PASSWORD_HASH_KEY}",
    ),
]


@pytest.mark.parametrize(("path", "value", "field"), _INVALID)
def test_invalid_fields_are_named_and_the_hash_never_shown(
    path: tuple[str, ...], value: Any, field: str
) -> None:
    secret = copy.deepcopy(stored(tag="blue"))
    _set(secret, path, value)
    with pytest.raises(InvalidRecord) as caught:
        secret_to_tenant(secret)
    message = str(caught.value)
    assert field in message
    assert HASH not in message
    assert HASH_B64 not in message
    assert "c29tZXNhbHRzb21lc2FsdA" not in message  # not even part of it


def test_the_message_names_the_secret() -> None:
    secret = stored()
    del secret["metadata"]["annotations"][EXPIRES_AT_ANNOTATION]
    with pytest.raises(InvalidRecord, match="emqx-3a7f9c2b1d4e5678"):
        secret_to_tenant(secret)


def test_repr_of_a_tenant_read_from_a_secret_hides_the_hash() -> None:
    assert HASH not in repr(secret_to_tenant(stored()))


def _non_canonical(encoded: str) -> str:
    """The same bytes in base64 whose unused trailing bits are not zero: `b64decode` reads
    it as `encoded`, the API server never writes it."""
    last = encoded.rstrip("=")[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    index = alphabet.index(last)
    return encoded.replace(last + "=", alphabet[index + 1] + "=", 1)


def test_base64_with_nonzero_trailing_bits_is_refused() -> None:
    encoded = PADDED_B64
    assert encoded.endswith("=") and secret_to_tenant(
        stored() | {"data": {PASSWORD_HASH_KEY: encoded}}
    )
    other = _non_canonical(encoded)
    assert base64.b64decode(other) == base64.b64decode(encoded)
    secret = stored()
    secret["data"][PASSWORD_HASH_KEY] = other
    with pytest.raises(InvalidRecord, match=PASSWORD_HASH_KEY):
        secret_to_tenant(secret)


def test_a_secret_that_is_not_an_object_is_unreadable() -> None:
    value: object
    for value in (None, [], "secret", 7):
        with pytest.raises(InvalidRecord, match="'\\?'"):
            secret_to_tenant(value)


def test_a_credential_nested_past_the_parsers_stack_is_unreadable() -> None:
    secret = stored()
    nested = hostile_values.deep_json(100_000)
    secret["data"]["credential.0123abcd"] = base64.b64encode(nested.encode()).decode()
    with pytest.raises(InvalidRecord, match=r"credential\.0123abcd"):
        secret_to_tenant(secret)


def test_an_unforeseen_failure_is_still_only_unreadable(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(text: str) -> object:
        raise ZeroDivisionError(text)

    monkeypatch.setattr(secret_format, "is_valid_tag", broken)
    with pytest.raises(InvalidRecord, match=r"emqx-3a7f9c2b1d4e5678.*ZeroDivisionError") as caught:
        secret_to_tenant(stored(tag="blue"))
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


# -- whatever a hand edit leaves, reading raises InvalidRecord or nothing ------------------

_FIELDS: list[tuple[str, ...]] = [
    (),
    ("metadata",),
    ("metadata", "name"),
    ("metadata", "labels"),
    ("metadata", "labels", TENANT_LABEL),
    ("metadata", "labels", TAG_LABEL),
    ("metadata", "labels", IP_HASH_LABEL),
    ("metadata", "annotations"),
    ("metadata", "annotations", CREATED_AT_ANNOTATION),
    ("metadata", "annotations", EXPIRES_AT_ANNOTATION),
    ("metadata", "annotations", PAUSED_ANNOTATION),
    ("metadata", "resourceVersion"),
    ("data",),
    ("data", PASSWORD_HASH_KEY),
    ("data", "credential.0123abcd"),
]
_CREDENTIAL_FIELDS = ["label", "password_hash", "allow_publish", "allow_subscribe", "created_at"]


def _edited(path: tuple[str, ...], value: Any) -> Any:
    secret = stored(tag="blue", ip_hash="abc", paused=True)
    if not path:
        return value
    _set(secret, path, value)
    return secret


def _read_or_refuse(secret: Any) -> Tenant | None:
    """secret_to_tenant's answer; None for InvalidRecord (anything else fails the test)."""
    try:
        tenant = secret_to_tenant(secret)
    except InvalidRecord as exc:
        message = str(exc)
        assert HASH not in message and HASH_B64 not in message
        return None
    assert isinstance(tenant, Tenant)
    return tenant


@hostile_values.BOUNDED
@given(path=st.sampled_from(_FIELDS), value=hostile_values.json_values())
def test_any_json_value_in_any_field_is_read_or_refused(path: tuple[str, ...], value: Any) -> None:
    _read_or_refuse(_edited(path, value))


@hostile_values.BOUNDED
@given(
    key=st.sampled_from([CREATED_AT_ANNOTATION, EXPIRES_AT_ANNOTATION]),
    text=hostile_values.time_texts(),
)
def test_any_time_text_is_read_or_refused(key: str, text: str) -> None:
    tenant = _read_or_refuse(_edited(("metadata", "annotations", key), text))
    if tenant is not None:  # what was read is a time UTC holds, and it survives a rewrite
        whole = replace(
            tenant,
            created_at=tenant.created_at.replace(microsecond=0),
            expires_at=tenant.expires_at.replace(microsecond=0),
        )
        assert secret_to_tenant(tenant_to_secret(tenant, "zero")) == whole


@hostile_values.BOUNDED
@given(
    key=st.sampled_from([PASSWORD_HASH_KEY, "credential.0123abcd"]),
    encoded=hostile_values.base64_texts(),
)
def test_any_data_value_is_read_or_refused(key: str, encoded: str) -> None:
    tenant = _read_or_refuse(_edited(("data", key), encoded))
    if tenant is not None:
        assert base64.b64encode(base64.b64decode(encoded)).decode() == encoded


@hostile_values.BOUNDED
@given(
    field=st.sampled_from([*_CREDENTIAL_FIELDS, None]),
    value=hostile_values.json_values(),
    text=hostile_values.json_texts(),
)
def test_any_credential_json_is_read_or_refused(field: str | None, value: Any, text: str) -> None:
    fields = {
        "label": "dash",
        "password_hash": HASH,
        "allow_publish": True,
        "allow_subscribe": False,
        "created_at": "2025-01-02T00:00:00Z",
    }
    if field is not None:
        fields[field] = value
    payload = json.dumps(fields) if field is not None else text
    _read_or_refuse(
        _edited(("data", "credential.0123abcd"), base64.b64encode(payload.encode()).decode())
    )


def _message(secret: Any) -> str:
    with pytest.raises(InvalidRecord) as caught:
        secret_to_tenant(secret)
    return str(caught.value)


def test_messages_are_exact() -> None:
    name = "Secret 'emqx-3a7f9c2b1d4e5678': "
    cases: list[tuple[tuple[str, ...], Any, str]] = [
        ((), [], "Secret '?': is not a JSON object"),
        (("metadata",), None, "Secret '?': metadata is missing"),
        (
            ("metadata", "labels"),
            {"a": 1},
            name + "metadata.labels holds a value that is not a string",
        ),
        (("metadata", "labels"), "x", name + "metadata.labels is not a map"),
        (
            ("metadata", "annotations"),
            {"a": 1},
            name + "metadata.annotations holds a value that is not a string",
        ),
        (("metadata", "resourceVersion"), 7, name + "metadata.resourceVersion is not a string"),
        (("data",), "x", name + "data is not a map"),
        (("data", PASSWORD_HASH_KEY), 7, name + "data.password-hash is not a base64 string"),
        (
            ("data", PASSWORD_HASH_KEY),
            "!!",
            name + "data.password-hash is not base64 of UTF-8 text",
        ),
        (
            ("metadata", "name"),
            "emqx-x",
            "Secret 'emqx-x': metadata.name is not an instance id"
            " (emqx- and 16 lowercase hex digits)",
        ),
    ]
    for path, value, message in cases:
        assert _message(_edited(path, value)) == message, path


def test_long_names_are_shortened_in_messages() -> None:
    for length, shown in ((80, "a" * 80), (81, "a" * 80 + "...")):
        assert _message(_edited(("metadata", "name"), "a" * length)).startswith(
            f"Secret {shown!r}:"
        )
        key = "credential." + "b" * (length - 11)
        shown_key = key if length <= 80 else key[:80] + "..."
        secret = stored()
        secret["data"][key] = "!!"
        assert f"data.{shown_key}: is not base64" in _message(secret)


@pytest.mark.parametrize("name", [None, 7, "", ["emqx-3a7f9c2b1d4e5678"]])
def test_a_name_that_is_no_string_is_shown_as_a_question_mark(name: object) -> None:
    assert _message(_edited(("metadata", "name"), name)).startswith("Secret '?': metadata.name")


def test_a_secret_without_resource_version_reads_as_unstored() -> None:
    secret = stored()
    del secret["metadata"]["resourceVersion"]
    assert secret_to_tenant(secret).revision == ""


def test_credential_keys_hold_the_compact_json_of_each_credential() -> None:
    credential = ScopedCredential(
        "0123abcd", "dash", HASH, True, False, datetime(2025, 1, 2, tzinfo=UTC)
    )
    secret = tenant_to_secret(tenant(credentials=(credential,)), "zero")
    encoded = secret["data"]["credential.0123abcd"]
    assert json.loads(base64.b64decode(encoded)) == {
        "label": "dash",
        "password_hash": HASH,
        "allow_publish": True,
        "allow_subscribe": False,
        "created_at": "2025-01-02T00:00:00Z",
    }
    assert secret_to_tenant(secret).credentials == (credential,)
