"""The tenant record as a Secret: the exact shape operators and the ExHook rely on."""

from __future__ import annotations

import base64
import copy
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from tenants.errors import InvalidRecord
from tenants.record import Tenant
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

HASH = (
    "$argon2id$v=19$m=2048,t=1,p=1$c29tZXNhbHRzb21lc2FsdA"
    "$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
)
HASH_B64 = base64.b64encode(HASH.encode()).decode()


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
    (("metadata", "resourceVersion"), 7, "metadata.resourceVersion"),
    (("data",), _DELETE, f"data.{PASSWORD_HASH_KEY}"),
    (("data",), "x", "data"),
    (("data", PASSWORD_HASH_KEY), _DELETE, f"data.{PASSWORD_HASH_KEY}"),
    (("data", PASSWORD_HASH_KEY), HASH, f"data.{PASSWORD_HASH_KEY}"),  # not base64
    (("data", PASSWORD_HASH_KEY), HASH_B64[:-3], f"data.{PASSWORD_HASH_KEY}"),
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
