"""API keys in the embedded store: their own table in the tenants' sqlite database.

One row per key (`name`, `revision`, JSON `record` with the role, the argon2 hash of the
secret and the creation time). The table lives beside the tenant tables but is not part
of their change log: nothing watches API keys, each request reads the row it needs.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

from tenants.api_keys import ApiKey, Role, is_api_key_name
from tenants.errors import AlreadyExists, InvalidRecord
from tenants.hashing import is_phc_argon2
from tenants.record import format_time, parse_time
from tenants.sqlite_db import SqliteDb

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    record TEXT NOT NULL
);
"""


def encode_api_key(key: ApiKey) -> str:
    return json.dumps(
        {
            "role": key.role.value,
            "secret_hash": key.secret_hash,
            "created_at": format_time(key.created_at),
        },
        separators=(",", ":"),
    )


def decode_api_key(name: str, text: str, revision: int) -> ApiKey:
    """The key stored as `text`; InvalidRecord names the bad field, never the hash."""
    if not is_api_key_name(name):
        raise InvalidRecord("api key row name is not a valid key name")
    try:
        data = json.loads(text)
    except ValueError:
        raise InvalidRecord(f"api key {name}: record is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidRecord(f"api key {name}: record is not a JSON object")
    secret_hash = data.get("secret_hash")
    if not isinstance(secret_hash, str) or not is_phc_argon2(secret_hash):
        raise InvalidRecord(f"api key {name}: secret_hash is not an argon2 PHC string")
    try:
        role = Role(str(data.get("role")))
    except ValueError:
        raise InvalidRecord(f"api key {name}: role is not administrator or viewer") from None
    try:
        created_at = parse_time(str(data["created_at"]))
    except (KeyError, ValueError):
        raise InvalidRecord(f"api key {name}: created_at is missing or not RFC 3339") from None
    return ApiKey(name, role, secret_hash, created_at, str(revision))


class LocalApiKeyStore:
    """ApiKeyStore on the sqlite database at `path`. Its own connection and thread."""

    def __init__(self, path: Path, *, busy_timeout: float = 5.0) -> None:
        self.path = path
        self._db = SqliteDb(path, _SCHEMA, busy_timeout=busy_timeout, thread_name="local-api-keys")

    def __repr__(self) -> str:
        return f"LocalApiKeyStore({str(self.path)!r})"

    async def create(self, key: ApiKey) -> ApiKey:
        record = encode_api_key(key)

        def op(conn: sqlite3.Connection) -> ApiKey:
            try:
                cur = conn.execute(
                    "INSERT INTO api_keys (name, revision, record) VALUES (?, 1, ?)",
                    (key.name, record),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"api key {key.name} exists") from None
            return ApiKey(key.name, key.role, key.secret_hash, key.created_at, str(cur.rowcount))

        return await self._db.run(op)

    async def get(self, name: str) -> ApiKey | None:
        def op(conn: sqlite3.Connection) -> ApiKey | None:
            row = conn.execute(
                "SELECT revision, record FROM api_keys WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                return None
            try:
                return decode_api_key(name, row[1], row[0])
            except InvalidRecord as exc:
                log.warning("api key unreadable, treating it as absent: %s", exc)
                return None

        return await self._db.run(op)

    async def list(self) -> tuple[ApiKey, ...]:
        def op(conn: sqlite3.Connection) -> tuple[ApiKey, ...]:
            rows = conn.execute("SELECT name, revision, record FROM api_keys").fetchall()
            keys = []
            for name, revision, record in rows:
                try:
                    keys.append(decode_api_key(name, record, revision))
                except InvalidRecord as exc:
                    log.warning("skipping unreadable api key: %s", exc)
            return tuple(keys)

        return await self._db.run(op)

    async def delete(self, name: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM api_keys WHERE name = ?", (name,))
            return cur.rowcount > 0

        return await self._db.run(op)

    async def close(self) -> None:
        await self._db.close()
