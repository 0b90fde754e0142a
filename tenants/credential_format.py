"""One scoped credential as a JSON object: the part both stores' formats share.

    {"label": "dashboard", "password_hash": "$argon2id$...", "allow_publish": false,
     "allow_subscribe": true, "created_at": "2026-01-01T00:00:00Z"}

The Kubernetes Secret holds it (compact, base64) under the data key
`credential.<cred_id>`; the embedded store keeps a list of them, each with its
`cred_id`, in the record's JSON. Reading is strict about the fields it knows and ignores
others; a problem is a ValueError whose message names the field, never its value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tenants.credentials import is_credential_id
from tenants.hashing import is_phc_argon2
from tenants.record import ScopedCredential, format_time, is_valid_tag, parse_time

SECRET_KEY_PREFIX = "credential."  # noqa: S105 - a data key prefix, not a password


def secret_key(cred_id: str) -> str:
    """The Secret data key of a credential: `credential.<cred_id>`."""
    return SECRET_KEY_PREFIX + cred_id


def credential_fields(credential: ScopedCredential) -> dict[str, Any]:
    return {
        "label": credential.label,
        "password_hash": credential.password_hash,
        "allow_publish": credential.allow_publish,
        "allow_subscribe": credential.allow_subscribe,
        "created_at": format_time(credential.created_at),
    }


def credential_json(credential: ScopedCredential) -> str:
    """The compact JSON of a credential (without its id, which is the data key's)."""
    return json.dumps(credential_fields(credential), separators=(",", ":"))


def is_valid_label(label: str) -> bool:
    """A label follows the tag rules and is not empty."""
    return bool(label) and is_valid_tag(label)


def credential_from_fields(cred_id: str, data: object) -> ScopedCredential:
    """The credential `data` describes; ValueError names what is wrong."""
    if not is_credential_id(cred_id):
        raise ValueError("the credential id is not a rights letter and 7 lowercase hex digits")
    if not isinstance(data, Mapping):
        raise ValueError("is not a JSON object")
    label = data.get("label")
    if not isinstance(label, str) or not is_valid_label(label):
        raise ValueError("label is missing or not a valid label")
    password_hash = data.get("password_hash")
    if not isinstance(password_hash, str) or not is_phc_argon2(password_hash):
        raise ValueError("password_hash is not an argon2 PHC string")
    rights = [data.get("allow_publish"), data.get("allow_subscribe")]
    if not all(isinstance(right, bool) for right in rights):
        raise ValueError("allow_publish and allow_subscribe must be true or false")
    try:
        created = parse_time(data.get("created_at"))
    except ValueError:
        raise ValueError("created_at is missing or not RFC 3339 with a timezone") from None
    return ScopedCredential(
        cred_id=cred_id,
        label=label,
        password_hash=password_hash,
        allow_publish=data["allow_publish"],
        allow_subscribe=data["allow_subscribe"],
        created_at=created,
    )


def credential_from_json(cred_id: str, text: str) -> ScopedCredential:
    """The credential the JSON `text` describes; ValueError whatever is wrong with it."""
    return credential_from_fields(cred_id, load_json(text))


def load_json(text: str) -> object:
    """`json.loads`, every failure a ValueError: nesting too deep for the parser's stack
    (RecursionError), numbers too long for int() or too large for a float."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("is JSON nested too deeply") from None
    except (ValueError, OverflowError, TypeError):
        raise ValueError("is not JSON") from None
