"""The tenant record as a Kubernetes Secret: the contract with operators and the ExHook.

One Secret per instance, named after the instance id, `type: Opaque`:

    metadata.labels       app.kubernetes.io/managed-by: zero-emqx
                          zero-emqx.io/tenant: "true"
                          zero-emqx.io/tag: <tag>            (only when the tag is set)
                          zero-emqx.io/ip-hash: <ip hash>    (only when set)
    metadata.annotations  zero-emqx.io/created-at: 2025-01-01T00:00:00Z
                          zero-emqx.io/expires-at: 2025-01-08T00:00:00Z
                          zero-emqx.io/paused: "true"        (only when paused)
    data                  password-hash: base64 of the argon2 PHC string
                          credential.<cred_id>: base64 of one scoped credential's
                            compact JSON (tenants/credential_format.py), one key each

An operator revokes one scoped credential by removing its key:
`kubectl patch secret ID --type=json -p '[{"op":"remove","path":"/data/credential.<cred_id>"}]'`.
`Tenant.revision` is `metadata.resourceVersion`. Reading refuses anything else with
InvalidRecord, whose message names the Secret and the field but never the data: whatever
a hand edit wrote (any JSON value in any field, times UTC cannot hold, nesting too deep,
base64 that is not the canonical encoding), reading raises nothing else.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from tenants.credential_format import (
    SECRET_KEY_PREFIX,
    credential_from_json,
    credential_json,
    secret_key,
)
from tenants.credentials import is_instance_id
from tenants.errors import InvalidRecord
from tenants.hashing import is_phc_argon2
from tenants.record import (
    ScopedCredential,
    Tenant,
    format_time,
    in_order,
    is_valid_tag,
    parse_time,
)

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "zero-emqx"
TENANT_LABEL = "zero-emqx.io/tenant"
TAG_LABEL = "zero-emqx.io/tag"
IP_HASH_LABEL = "zero-emqx.io/ip-hash"
CREATED_AT_ANNOTATION = "zero-emqx.io/created-at"
EXPIRES_AT_ANNOTATION = "zero-emqx.io/expires-at"
PAUSED_ANNOTATION = "zero-emqx.io/paused"
PASSWORD_HASH_KEY = "password-hash"  # noqa: S105 - a data key, not a password
SECRET_TYPE = "Opaque"  # noqa: S105 - the Secret type

LABEL_SELECTOR = f"{TENANT_LABEL}=true"

_NAME_SHOWN = 80  # how much of a foreign Secret name an error message repeats

_Invalid = Callable[[str], InvalidRecord]


def tenant_to_secret(tenant: Tenant, namespace: str) -> dict[str, Any]:
    """The Secret manifest for `tenant`; carries its revision as the update precondition."""
    labels = {MANAGED_BY_LABEL: MANAGED_BY, TENANT_LABEL: "true"}
    if tenant.tag:
        labels[TAG_LABEL] = tenant.tag
    if tenant.ip_hash:
        labels[IP_HASH_LABEL] = tenant.ip_hash
    annotations = {
        CREATED_AT_ANNOTATION: format_time(tenant.created_at),
        EXPIRES_AT_ANNOTATION: format_time(tenant.expires_at),
    }
    if tenant.paused:
        annotations[PAUSED_ANNOTATION] = "true"
    metadata: dict[str, Any] = {
        "name": tenant.instance_id,
        "namespace": namespace,
        "labels": labels,
        "annotations": annotations,
    }
    if tenant.revision:
        metadata["resourceVersion"] = tenant.revision
    data = {PASSWORD_HASH_KEY: _b64(tenant.password_hash)}
    for credential in tenant.credentials:
        data[secret_key(credential.cred_id)] = _b64(credential_json(credential))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": SECRET_TYPE,
        "data": data,
    }


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret_name(secret: object) -> str:
    """The Secret's name, shortened for messages ('?' when it has none)."""
    metadata = secret.get("metadata") if isinstance(secret, Mapping) else None
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    if not isinstance(name, str) or not name:
        return "?"
    return name if len(name) <= _NAME_SHOWN else name[:_NAME_SHOWN] + "..."


def secret_to_tenant(secret: object) -> Tenant:
    """The tenant a Secret describes; InvalidRecord names what is wrong, never the data.
    Nothing else escapes, whatever `secret` holds."""
    shown = secret_name(secret)

    def invalid(what: str) -> InvalidRecord:
        return InvalidRecord(f"Secret {shown!r}: {what}")

    try:
        return _read(secret, invalid)
    except InvalidRecord:
        raise
    except Exception as exc:  # a failure no check above foresaw: still only "unreadable"
        raise invalid(f"unreadable ({type(exc).__name__})") from None


def _read(secret: object, invalid: _Invalid) -> Tenant:
    if not isinstance(secret, Mapping):
        raise invalid("is not a JSON object")
    metadata = secret.get("metadata")
    if not isinstance(metadata, Mapping):
        raise invalid("metadata is missing")
    name = metadata.get("name")
    if not isinstance(name, str) or not is_instance_id(name):
        raise invalid("metadata.name is not an instance id (emqx- and 16 lowercase hex digits)")
    labels = _string_map(metadata.get("labels"), "metadata.labels", invalid)
    annotations = _string_map(metadata.get("annotations"), "metadata.annotations", invalid)

    if labels.get(TENANT_LABEL) != "true":
        raise invalid(f"label {TENANT_LABEL} is not 'true'")
    tag = labels.get(TAG_LABEL, "")
    if not is_valid_tag(tag):
        raise invalid(f"label {TAG_LABEL} is not a valid tag")
    ip_hash = labels.get(IP_HASH_LABEL, "")

    created_at = _time(annotations, CREATED_AT_ANNOTATION, invalid)
    expires_at = _time(annotations, EXPIRES_AT_ANNOTATION, invalid)
    paused_text = annotations.get(PAUSED_ANNOTATION, "false")
    if paused_text not in {"true", "false"}:
        raise invalid(f"annotation {PAUSED_ANNOTATION} must be 'true' or 'false'")

    revision = metadata.get("resourceVersion", "")
    if not isinstance(revision, str):
        raise invalid("metadata.resourceVersion is not a string")
    data = secret.get("data")
    return Tenant(
        instance_id=name,
        password_hash=_password_hash(data, invalid),
        created_at=created_at,
        expires_at=expires_at,
        tag=tag,
        ip_hash=ip_hash,
        paused=paused_text == "true",
        credentials=_credentials(data, invalid),
        revision=revision,
    )


def _string_map(value: object, field: str, invalid: _Invalid) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise invalid(f"{field} is not a map")
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise invalid(f"{field} holds a value that is not a string")
        result[key] = item
    return result


def _time(annotations: Mapping[str, str], key: str, invalid: _Invalid) -> datetime:
    text = annotations.get(key)
    if text is None:
        raise invalid(f"annotation {key} is missing")
    try:
        return parse_time(text)
    except ValueError:
        raise invalid(f"annotation {key} is not an RFC 3339 time with a timezone") from None


def _password_hash(data: object, invalid: _Invalid) -> str:
    field = f"data.{PASSWORD_HASH_KEY}"
    if data is None:
        raise invalid(f"{field} is missing")
    if not isinstance(data, Mapping):
        raise invalid("data is not a map")
    encoded = data.get(PASSWORD_HASH_KEY)
    if encoded is None:
        raise invalid(f"{field} is missing")
    try:
        text = decode_data(encoded)
    except ValueError as exc:
        raise invalid(f"{field} {exc}") from None
    if not is_phc_argon2(text):
        raise invalid(f"{field} is not an argon2 PHC string")
    return text


def _credentials(data: object, invalid: _Invalid) -> tuple[ScopedCredential, ...]:
    """Every `credential.<cred_id>` data key (`data` is a map: _password_hash checked)."""
    assert isinstance(data, Mapping)
    found = []
    for key, encoded in data.items():
        if not isinstance(key, str) or not key.startswith(SECRET_KEY_PREFIX):
            continue
        shown = key if len(key) <= _NAME_SHOWN else key[:_NAME_SHOWN] + "..."
        try:
            text = decode_data(encoded)
            found.append(credential_from_json(key.removeprefix(SECRET_KEY_PREFIX), text))
        except ValueError as exc:
            raise invalid(f"data.{shown}: {exc}") from None
    return in_order(found)


def decode_data(encoded: object) -> str:
    """The UTF-8 text of one Secret data value: base64 exactly as the API server writes it
    (the standard alphabet, padded, nothing that re-encodes differently); ValueError else."""
    if not isinstance(encoded, str):
        raise ValueError("is not a base64 string")
    try:
        raw = base64.b64decode(encoded)
        if base64.b64encode(raw).decode() != encoded:
            raise ValueError  # valid, but not what the API server writes
        return raw.decode()
    except (binascii.Error, ValueError):
        raise ValueError("is not base64 of UTF-8 text") from None
