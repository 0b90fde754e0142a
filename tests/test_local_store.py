"""The embedded store on a real sqlite file: hand-edited rows never stop the index, and
the change log keeps no superseded password hash."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from tenants.credentials import new_password
from tenants.hashing import hash_password, verify_password
from tenants.index import IndexSync, TenantIndex
from tenants.local_format import SUPERSEDED_HASH, encode_record
from tenants.local_store import DB_NAME, LocalStore
from tenants.store import Change, ChangeType
from tests import hostile_values
from tests.conftest import make_tenant
from tests.waiting import until

ROW_FIELDS = [
    "password_hash",
    "created_at",
    "expires_at",
    "tag",
    "ip_hash",
    "paused",
    "credentials",
]


def _rows() -> st.SearchStrategy[Callable[[str], object]]:
    """A row's new `record` column, given the current one: a field set to any JSON value
    or any time text, any text at all, or a value that is not text."""
    field = st.tuples(
        st.sampled_from(ROW_FIELDS),
        st.one_of(hostile_values.json_values(), hostile_values.time_texts()),
    ).map(lambda edit: lambda text: json.dumps({**json.loads(text), edit[0]: edit[1]}))
    whole = hostile_values.json_texts().map(lambda new: lambda _: new)
    other = st.sampled_from([7, 1.5, b"\x00{}", b""]).map(lambda new: lambda _: new)
    return st.one_of(field, whole, other)


def _current(path: Path, instance_id: str) -> str:
    conn = sqlite3.connect(path)
    try:
        (text,) = conn.execute(
            "SELECT record FROM tenants WHERE instance_id = ?", (instance_id,)
        ).fetchone()
    finally:
        conn.close()
    return str(text)


async def _edits_then_deletions(directory: Path, edits: list[Callable[[str], object]]) -> None:
    store = LocalStore(directory, poll_interval=0.01)
    try:
        listed = await store.create(make_tenant().tenant)
        hostile_values.hand_edit_row(
            store.path, listed.instance_id, edits[0](_current(store.path, listed.instance_id))
        )
        index = TenantIndex()
        async with IndexSync(store, index, retry_initial=0.05) as sync:
            assert await sync.wait_synced(5)
            edited = [listed]
            for edit in edits[1:]:
                victim = await store.create(make_tenant().tenant)
                doomed = await store.create(make_tenant().tenant)
                await until(lambda: index.get(doomed.instance_id) is not None)  # noqa: B023
                hostile_values.hand_edit_row(
                    store.path, victim.instance_id, edit(_current(store.path, victim.instance_id))
                )
                assert await store.delete(doomed.instance_id)
                await until(lambda: index.get(doomed.instance_id) is None)  # noqa: B023
                edited.append(victim)
            for tenant in edited:
                seen = index.get(tenant.instance_id)
                assert seen == await store.get(tenant.instance_id)  # get never raises either
                assert (seen is None) == (tenant.instance_id in index.unreadable())
        fresh = TenantIndex()  # a new ExHook starting now syncs too
        async with IndexSync(store, fresh) as sync:
            assert await sync.wait_synced(5)
        assert sorted(fresh.tenants(), key=str) == sorted(index.tenants(), key=str)
    finally:
        await store.close()


def _set(field: str, value: Any) -> Callable[[str], object]:
    return lambda text: json.dumps({**json.loads(text), field: value})


_ISSUE_EDITS = [
    _set("expires_at", "9999-12-31T23:59:59-01:00"),
    _set("expires_at", "9999-12-31T23:59:59-01:00"),
    lambda _: hostile_values.deep_json(100_000),
    _set("credentials", json.loads(hostile_values.deep_json(200))),
]


@hostile_values.BOUNDED_SLOW
@given(edits=st.lists(_rows(), min_size=1, max_size=12))
@example(edits=_ISSUE_EDITS)
def test_no_hand_edit_stops_the_index_following_the_store(
    edits: list[Callable[[str], object]],
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(_edits_then_deletions(Path(directory), edits))


# -- the change log ---------------------------------------------------------------------------


async def test_no_superseded_hash_remains_in_the_database_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    current = await store.create(make_tenant().tenant)
    hashes = [current.password_hash]
    for _ in range(3):  # rotations: the record's hash replaced each time
        new = hash_password(new_password())
        current = await store.update(replace(current, password_hash=new))
        hashes.append(new)
    seen = []
    async for change in store.watch("0"):  # a watcher from the start still gets there
        seen.append(change)
        if change.revision == current.revision:
            break
    # every change still reaches the watcher; the superseded ones with a hash that never
    # verifies (a hash change stays a change), the last one as the row holds it
    assert [c.type for c in seen] == [ChangeType.ADDED, *[ChangeType.MODIFIED] * 3]
    assert seen[-1].tenant == current
    assert [c.tenant.password_hash for c in seen[:-1] if c.tenant] == [SUPERSEDED_HASH] * 3
    assert not verify_password(SUPERSEDED_HASH, "")
    await store.close()
    assert not (tmp_path / f"{DB_NAME}-wal").exists()  # closing checkpointed it all
    content = (tmp_path / DB_NAME).read_bytes()
    assert hashes[-1].encode() in content
    for old in hashes[:-1]:
        assert old.encode() not in content, "a superseded hash is still in the file"

    again = LocalStore(tmp_path)
    assert await again.delete(current.instance_id)
    await again.close()
    assert hashes[-1].encode() not in (tmp_path / DB_NAME).read_bytes()


async def test_a_change_log_written_by_an_earlier_version_is_pruned(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    tenant = await store.create(make_tenant().tenant)
    await store.close()
    legacy = encode_record(tenant)  # what earlier versions kept for every change
    conn = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    conn.execute("UPDATE changes SET record = ?", (legacy,))
    conn.close()
    reopened = LocalStore(tmp_path)
    await reopened.ping()
    assert await reopened.delete(tenant.instance_id)
    await reopened.close()
    assert tenant.password_hash.encode() not in (tmp_path / DB_NAME).read_bytes()


async def test_a_superseded_change_keeps_the_hashes_that_did_not_change(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    try:
        created = await store.create(make_tenant().tenant)
        paused = await store.update(replace(created, paused=True))
        await store.update(replace(paused, tag="later"))  # supersedes both
        seen = [c async for c in _first(store.watch("0"), 3)]
        assert [c.tenant.password_hash for c in seen if c.tenant] == [created.password_hash] * 3
        assert [c.tenant.paused for c in seen if c.tenant] == [False, True, True]
    finally:
        await store.close()


async def _first(changes: AsyncIterator[Change], n: int) -> AsyncIterator[Change]:
    async for change in changes:
        yield change
        n -= 1
        if n == 0:
            return
