"""The embedded tenant store: one sqlite database in WAL mode on local disk.

Safe for the manager and a separate ExHook process on the same host (sqlite's
own locking). Every write appends to a change log under the same transaction;
watchers poll that log, so a change reaches them within `poll_interval`. The
log is compacted to the newest `retain_changes` entries; a watcher asking for
an older revision gets WatchExpired and relists, as with Kubernetes' 410 Gone.

The log keeps only what watchers need: the kind of change, the instance id, the
revision and the record with its password hashes replaced by fingerprints
(tenants/local_format.py `encode_change`). A watcher reads the current record from the
row; a change the row has moved past comes from the log, with the row's hashes where
the fingerprints match and a hash that never verifies where they do not. So no
superseded password hash outlives its row: `secure_delete` zeroes what an update or a
delete frees.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tenants.errors import (
    AlreadyExists,
    Conflict,
    InvalidRecord,
    NotFound,
    WatchExpired,
)
from tenants.local_format import decode_change, decode_record, encode_change, encode_record
from tenants.record import Tenant
from tenants.sqlite_db import SqliteDb
from tenants.store import Change, ChangeType, Listing, Unreadable

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
    record TEXT  -- encode_change: hashes as fingerprints (earlier versions kept them)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('compacted_through', 0);
PRAGMA secure_delete = ON;
UPDATE changes SET record = NULL WHERE instr(record, '$argon2') > 0;
"""


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
        self, conn: sqlite3.Connection, kind: ChangeType, instance_id: str, change: str | None
    ) -> int:
        cur = conn.execute(
            "INSERT INTO changes (type, instance_id, record) VALUES (?, ?, ?)",
            (kind.value, instance_id, change),
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
        record, change = encode_record(tenant), encode_change(tenant)

        def op(conn: sqlite3.Connection) -> Tenant:
            conn.execute("BEGIN IMMEDIATE")
            exists = conn.execute(
                "SELECT 1 FROM tenants WHERE instance_id = ?", (tenant.instance_id,)
            ).fetchone()
            if exists:
                conn.execute("ROLLBACK")
                raise AlreadyExists(f"instance {tenant.instance_id} exists")
            revision = self._append(conn, ChangeType.ADDED, tenant.instance_id, change)
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
            if row is None:
                return None
            try:
                return decode_record(instance_id, row[1], row[0])
            except InvalidRecord as exc:  # unreadable is gone (the index logs and counts it)
                log.debug("tenant record unreadable, treated as absent: %s", exc)
                return None

        return await self._db.run(op)

    async def list(self) -> Listing:
        def op(conn: sqlite3.Connection) -> Listing:
            conn.execute("BEGIN")
            rows = conn.execute("SELECT instance_id, revision, record FROM tenants").fetchall()
            revision = self._head(conn)
            conn.execute("COMMIT")
            tenants, unreadable = [], []
            for instance_id, rev, record in rows:
                try:
                    tenants.append(decode_record(instance_id, record, rev))
                except InvalidRecord as exc:
                    unreadable.append(Unreadable(str(instance_id), str(exc)))
            return Listing(tuple(tenants), str(revision), tuple(unreadable))

        return await self._db.run(op)

    async def update(self, tenant: Tenant) -> Tenant:
        record, change = encode_record(tenant), encode_change(tenant)

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
            revision = self._append(conn, ChangeType.MODIFIED, tenant.instance_id, change)
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
                "SELECT 1 FROM tenants WHERE instance_id = ?", (instance_id,)
            ).fetchone()
            if row is None:
                conn.execute("ROLLBACK")
                return False
            self._append(conn, ChangeType.DELETED, instance_id, None)
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
            for rev, kind, instance_id, logged, row_revision, record in rows:
                since = rev
                change = _to_change(
                    ChangeType(kind), instance_id, rev, logged, row_revision, record
                )
                if change is not None:
                    yield change
            if not rows:
                await asyncio.sleep(self._poll_interval)

    def _changes_after(self, conn: sqlite3.Connection, *, since: int) -> builtins.list[Any]:
        conn.execute("BEGIN")
        compacted = conn.execute(
            "SELECT value FROM meta WHERE key = 'compacted_through'"
        ).fetchone()[0]
        rows = conn.execute(
            "SELECT c.revision, c.type, c.instance_id, c.record, t.revision, t.record"
            " FROM changes c"
            " LEFT JOIN tenants t ON t.instance_id = c.instance_id"
            " WHERE c.revision > ? ORDER BY c.revision LIMIT 1000",
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


def _to_change(
    kind: ChangeType,
    instance_id: str,
    revision: int,
    logged: Any,
    row_revision: int | None,
    record: Any,
) -> Change | None:
    """The change at `revision`: from the row when it is the row's revision, else from the
    log (hashes restored from the row where they match); None when the log has no record
    (written by an earlier version, then pruned: the row's later change follows)."""
    if kind is ChangeType.DELETED:
        return Change(kind, instance_id, None, str(revision))
    try:
        if row_revision == revision:
            tenant = decode_record(instance_id, record, revision)
        elif logged is None:
            return None
        else:
            current = _current(instance_id, record, row_revision)
            tenant = decode_change(instance_id, logged, revision, current)
    except InvalidRecord as exc:
        return Change(kind, instance_id, None, str(revision), unreadable=str(exc))
    return Change(kind, instance_id, tenant, str(revision))


def _current(instance_id: str, record: Any, revision: int | None) -> Tenant | None:
    if record is None or revision is None:
        return None
    try:
        return decode_record(instance_id, record, revision)
    except InvalidRecord:
        return None
