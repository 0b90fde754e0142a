"""The embedded tenant store: one sqlite database in WAL mode on local disk.

Safe for the manager and a separate ExHook process on the same host (sqlite's
own locking). Every write appends to a change log under the same transaction;
watchers poll that log, so a change reaches them within `poll_interval`. The
log is compacted to the newest `retain_changes` entries; a watcher asking for
an older revision gets WatchExpired and relists, as with Kubernetes' 410 Gone.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tenants.credential_format import credential_fields, credential_from_fields
from tenants.credentials import is_instance_id
from tenants.errors import (
    AlreadyExists,
    Conflict,
    InvalidRecord,
    NotFound,
    WatchExpired,
)
from tenants.hashing import is_phc_argon2
from tenants.record import ScopedCredential, Tenant, format_time, in_order, parse_time
from tenants.sqlite_db import SqliteDb
from tenants.store import Change, ChangeType, Listing

log = logging.getLogger(__name__)

DB_NAME = "tenants.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    instance_id TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    record TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('compacted_through', 0);
"""


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


def decode_record(instance_id: str, text: str, revision: int) -> Tenant:
    """The tenant stored as `text`; InvalidRecord names the bad field, never its value."""
    if not is_instance_id(instance_id):
        raise InvalidRecord("record key is not an instance id")
    try:
        data = json.loads(text)
    except ValueError:
        raise InvalidRecord(f"{instance_id}: record is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidRecord(f"{instance_id}: record is not a JSON object")
    password_hash = data.get("password_hash")
    if not isinstance(password_hash, str) or not is_phc_argon2(password_hash):
        raise InvalidRecord(f"{instance_id}: password_hash is not an argon2 PHC string")
    times = {}
    for name in ("created_at", "expires_at"):
        try:
            times[name] = parse_time(str(data[name]))
        except (KeyError, ValueError):
            raise InvalidRecord(f"{instance_id}: {name} is missing or not RFC 3339") from None
    tag, ip_hash, paused = data.get("tag", ""), data.get("ip_hash", ""), data.get("paused", False)
    if not isinstance(tag, str) or not isinstance(ip_hash, str) or not isinstance(paused, bool):
        raise InvalidRecord(f"{instance_id}: tag, ip_hash or paused has the wrong type")
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


class LocalStore:
    """TenantStore on sqlite. All database work runs on one store-owned thread."""

    def __init__(
        self,
        data_dir: Path,
        *,
        poll_interval: float = 0.2,
        retain_changes: int = 10_000,
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = data_dir / DB_NAME
        self._poll_interval = poll_interval
        self._retain = retain_changes
        self._db = SqliteDb(
            self.path, _SCHEMA, busy_timeout=busy_timeout, thread_name="local-store"
        )

    def __repr__(self) -> str:
        return f"LocalStore({str(self.path)!r})"

    # -- plumbing ---------------------------------------------------------------

    def _append(
        self, conn: sqlite3.Connection, kind: ChangeType, instance_id: str, record: str | None
    ) -> int:
        cur = conn.execute(
            "INSERT INTO changes (type, instance_id, record) VALUES (?, ?, ?)",
            (kind.value, instance_id, record),
        )
        revision = int(cur.lastrowid or 0)
        floor = revision - self._retain
        if floor > 0 and revision % 100 == 0:
            conn.execute("DELETE FROM changes WHERE revision <= ?", (floor,))
            conn.execute(
                "UPDATE meta SET value = max(value, ?) WHERE key = 'compacted_through'", (floor,)
            )
        return revision

    # -- TenantStore --------------------------------------------------------------

    async def create(self, tenant: Tenant) -> Tenant:
        record = encode_record(tenant)

        def op(conn: sqlite3.Connection) -> Tenant:
            conn.execute("BEGIN IMMEDIATE")
            exists = conn.execute(
                "SELECT 1 FROM tenants WHERE instance_id = ?", (tenant.instance_id,)
            ).fetchone()
            if exists:
                conn.execute("ROLLBACK")
                raise AlreadyExists(f"instance {tenant.instance_id} exists")
            revision = self._append(conn, ChangeType.ADDED, tenant.instance_id, record)
            conn.execute(
                "INSERT INTO tenants (instance_id, revision, record) VALUES (?, ?, ?)",
                (tenant.instance_id, revision, record),
            )
            conn.execute("COMMIT")
            return tenant.with_revision(str(revision))

        return await self._db.run(op)

    async def get(self, instance_id: str) -> Tenant | None:
        def op(conn: sqlite3.Connection) -> Tenant | None:
            row = conn.execute(
                "SELECT revision, record FROM tenants WHERE instance_id = ?", (instance_id,)
            ).fetchone()
            return None if row is None else decode_record(instance_id, row[1], row[0])

        return await self._db.run(op)

    async def list(self) -> Listing:
        def op(conn: sqlite3.Connection) -> Listing:
            conn.execute("BEGIN")
            rows = conn.execute("SELECT instance_id, revision, record FROM tenants").fetchall()
            revision = self._head(conn)
            conn.execute("COMMIT")
            tenants = []
            for instance_id, rev, record in rows:
                try:
                    tenants.append(decode_record(instance_id, record, rev))
                except InvalidRecord as exc:
                    log.warning("skipping unreadable tenant record: %s", exc)
            return Listing(tuple(tenants), str(revision))

        return await self._db.run(op)

    async def update(self, tenant: Tenant) -> Tenant:
        record = encode_record(tenant)

        def op(conn: sqlite3.Connection) -> Tenant:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "SELECT revision FROM tenants WHERE instance_id = ?", (tenant.instance_id,)
            ).fetchone()
            if row is None:
                conn.execute("ROLLBACK")
                raise NotFound(f"instance {tenant.instance_id} not found")
            if str(row[0]) != tenant.revision:
                conn.execute("ROLLBACK")
                raise Conflict(f"instance {tenant.instance_id} changed since it was read")
            revision = self._append(conn, ChangeType.MODIFIED, tenant.instance_id, record)
            conn.execute(
                "UPDATE tenants SET revision = ?, record = ? WHERE instance_id = ?",
                (revision, record, tenant.instance_id),
            )
            conn.execute("COMMIT")
            return tenant.with_revision(str(revision))

        return await self._db.run(op)

    async def delete(self, instance_id: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "SELECT record FROM tenants WHERE instance_id = ?", (instance_id,)
            ).fetchone()
            if row is None:
                conn.execute("ROLLBACK")
                return False
            self._append(conn, ChangeType.DELETED, instance_id, row[0])
            conn.execute("DELETE FROM tenants WHERE instance_id = ?", (instance_id,))
            conn.execute("COMMIT")
            return True

        return await self._db.run(op)

    async def watch(self, revision: str) -> AsyncIterator[Change]:
        try:
            since = int(revision)
        except ValueError:
            raise WatchExpired(f"not a local store revision: {revision!r}") from None
        while True:
            rows = await self._db.run(functools.partial(self._changes_after, since=since))
            for rev, kind, instance_id, record in rows:
                since = rev
                yield _to_change(ChangeType(kind), instance_id, record, rev)
            if not rows:
                await asyncio.sleep(self._poll_interval)

    def _changes_after(self, conn: sqlite3.Connection, *, since: int) -> builtins.list[Any]:
        conn.execute("BEGIN")
        compacted = conn.execute(
            "SELECT value FROM meta WHERE key = 'compacted_through'"
        ).fetchone()[0]
        rows = conn.execute(
            "SELECT revision, type, instance_id, record FROM changes"
            " WHERE revision > ? ORDER BY revision LIMIT 1000",
            (since,),
        ).fetchall()
        conn.execute("COMMIT")
        if since < compacted:
            raise WatchExpired(f"revision {since} is older than the change log ({compacted})")
        return rows

    def _head(self, conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT max(revision) FROM changes").fetchone()
        compacted = conn.execute(
            "SELECT value FROM meta WHERE key = 'compacted_through'"
        ).fetchone()[0]
        return max(int(row[0] or 0), int(compacted))

    async def ping(self) -> None:
        await self._db.run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        await self._db.close()


def _to_change(kind: ChangeType, instance_id: str, record: str | None, revision: int) -> Change:
    tenant: Tenant | None = None
    if record is not None:
        try:
            tenant = decode_record(instance_id, record, revision)
        except InvalidRecord as exc:
            if kind is not ChangeType.DELETED:
                log.warning("tenant record became unreadable: %s", exc)
    return Change(kind, instance_id, tenant, str(revision))
