"""The tenant record as the embedded store's JSON row (tenants/local_store.py).

One row per instance, keyed by the instance id, its `record` column one compact object:

    {"password_hash": "$argon2id$...", "created_at": "2026-01-01T00:00:00Z",
     "expires_at": "2026-01-08T00:00:00Z", "tag": "", "ip_hash": "", "paused": false,
     "credentials": [{"cred_id": "0123abcd", ...tenants/credential_format.py...}]}

`credentials` is left out when there are none. Reading refuses anything else with
InvalidRecord, whose message names the instance and the field but never the data;
whatever the row holds, reading raises nothing else.

The change log keeps the same object with every password hash replaced by a fingerprint
(`encode_change`): enough for a watcher to tell that a hash changed, useless to anyone
who reads the file. `decode_change` puts the current row's hash back where the
fingerprint matches it and SUPERSEDED_HASH (which never verifies) where it does not.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tenants.credential_format import credential_fields, credential_from_fields, load_json
from tenants.credentials import is_instance_id
from tenants.errors import InvalidRecord
from tenants.hashing import is_phc_argon2
from tenants.record import ScopedCredential, Tenant, format_time, in_order, is_valid_tag, parse_time

_NAME_SHOWN = 80  # how much of a foreign row key an error message repeats
_FINGERPRINT = "fingerprint:"
# A PHC-shaped string no password verifies against: a superseded hash, not kept.
SUPERSEDED_HASH = "$argon2id$v=19$m=2048,t=1,p=1$superseded$superseded"


def encode_record(tenant: Tenant) -> str:
    record: dict[str, Any] = {
        "password_hash": tenant.password_hash,
        "created_at": format_time(tenant.created_at),
        "expires_at": format_time(tenant.expires_at),
        "tag": tenant.tag,
        "ip_hash": tenant.ip_hash,
        "paused": tenant.paused,
    }
    if tenant.credentials:
        record["credentials"] = [
            {"cred_id": c.cred_id, **credential_fields(c)} for c in tenant.credentials
        ]
    return json.dumps(record, separators=(",", ":"))


def fingerprint(password_hash: str) -> str:
    return _FINGERPRINT + hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def encode_change(tenant: Tenant) -> str:
    """The record as the change log keeps it: every password hash a fingerprint."""
    record = json.loads(encode_record(tenant))
    record["password_hash"] = fingerprint(tenant.password_hash)
    for entry in record.get("credentials", ()):
        entry["password_hash"] = fingerprint(entry["password_hash"])
    return json.dumps(record, separators=(",", ":"))


def decode_record(instance_id: object, text: object, revision: int) -> Tenant:
    """The tenant stored as `text`; InvalidRecord names the bad field, never its value.
    Nothing else escapes, whatever the row holds."""
    return _decode(instance_id, text, revision, None)


def decode_change(
    instance_id: object, text: object, revision: int, current: Tenant | None
) -> Tenant:
    """A change log entry (encode_change), its hashes taken from `current` (the row's
    record now) where the fingerprints match, SUPERSEDED_HASH where they do not."""
    known = (
        {}
        if current is None
        else {
            fingerprint(h): h
            for h in (current.password_hash, *(c.password_hash for c in current.credentials))
        }
    )
    return _decode(instance_id, text, revision, known)


def _decode(
    instance_id: object, text: object, revision: int, hashes: dict[str, str] | None
) -> Tenant:
    if not isinstance(instance_id, str) or not is_instance_id(instance_id):
        shown = str(instance_id)[:_NAME_SHOWN]
        raise InvalidRecord(f"record key {shown!r} is not an instance id")
    try:
        return _read(instance_id, text, revision, hashes)
    except InvalidRecord:
        raise
    except Exception as exc:  # a failure no check foresaw: still only "unreadable"
        raise InvalidRecord(f"{instance_id}: unreadable ({type(exc).__name__})") from None


def _restore(data: dict[str, Any], hashes: dict[str, str]) -> None:
    """Fingerprints back to hashes, in place (anything else is left for _read to refuse)."""
    entries = [data, *(e for e in data.get("credentials") or () if isinstance(e, dict))]
    for entry in entries:
        value = entry.get("password_hash")
        if isinstance(value, str) and value.startswith(_FINGERPRINT):
            entry["password_hash"] = hashes.get(value, SUPERSEDED_HASH)


def _read(instance_id: str, text: object, revision: int, hashes: dict[str, str] | None) -> Tenant:
    if not isinstance(text, str):
        raise InvalidRecord(f"{instance_id}: record is not text")
    try:
        data = load_json(text)
    except ValueError as exc:
        raise InvalidRecord(f"{instance_id}: record {exc}") from None
    if isinstance(data, dict) and hashes is not None:
        _restore(data, hashes)
    if not isinstance(data, dict):
        raise InvalidRecord(f"{instance_id}: record is not a JSON object")
    password_hash = data.get("password_hash")
    if not isinstance(password_hash, str) or not is_phc_argon2(password_hash):
        raise InvalidRecord(f"{instance_id}: password_hash is not an argon2 PHC string")
    times = {}
    for name in ("created_at", "expires_at"):
        try:
            times[name] = parse_time(data.get(name))
        except ValueError:
            raise InvalidRecord(f"{instance_id}: {name} is missing or not RFC 3339") from None
    tag, ip_hash, paused = data.get("tag", ""), data.get("ip_hash", ""), data.get("paused", False)
    if not isinstance(tag, str) or not isinstance(ip_hash, str) or not isinstance(paused, bool):
        raise InvalidRecord(f"{instance_id}: tag, ip_hash or paused has the wrong type")
    if not is_valid_tag(tag):
        raise InvalidRecord(f"{instance_id}: tag is not a valid tag")
    return Tenant(
        instance_id=instance_id,
        password_hash=password_hash,
        created_at=times["created_at"],
        expires_at=times["expires_at"],
        tag=tag,
        ip_hash=ip_hash,
        paused=paused,
        credentials=_credentials(instance_id, data.get("credentials", [])),
        revision=str(revision),
    )


def _credentials(instance_id: str, entries: object) -> tuple[ScopedCredential, ...]:
    """The record's "credentials" list; InvalidRecord names the entry, never a hash."""
    if not isinstance(entries, list):
        raise InvalidRecord(f"{instance_id}: credentials is not a list")
    found: dict[str, ScopedCredential] = {}
    for n, entry in enumerate(entries):
        cred_id = entry.get("cred_id") if isinstance(entry, dict) else None
        where = f"{instance_id}: credentials[{n}]"
        if not isinstance(cred_id, str) or cred_id in found:
            raise InvalidRecord(f"{where}: cred_id is missing, not a string or repeated")
        try:
            found[cred_id] = credential_from_fields(cred_id, entry)
        except ValueError as exc:
            raise InvalidRecord(f"{where}: {exc}") from None
    return in_order(found.values())
