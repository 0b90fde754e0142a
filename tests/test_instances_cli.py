"""`zero-emqx instances ...` as an operator runs it, on the embedded store and on both."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest

from tenants.hashing import verify_password
from tenants.index import IndexSync, TenantIndex
from tenants.local_store import LocalStore
from tenants.record import Tenant
from tenants.store import TenantStore
from tests.conftest import make_tenant
from tests.waiting import until
from zero_emqx.instances import (
    add_instances_parser,
    format_table,
    instances_command,
    run_instances,
)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="zero-emqx")
    add_instances_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


async def cli(*argv: str) -> int:
    """The command as `zero-emqx` runs it: its own event loop, its own store connection."""
    return await asyncio.to_thread(run_instances, parse(*argv))


@pytest.fixture
async def seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Tenant]:
    data = tmp_path / "data"
    monkeypatch.setenv("ZERO_EMQX_STORE", "local")
    monkeypatch.setenv("ZERO_EMQX_DATA_DIR", str(data))
    store = LocalStore(data)
    try:
        tenants = [
            await store.create(make_tenant(tag="alpha").tenant),
            await store.create(make_tenant(paused=True).tenant),
            await store.create(make_tenant(ttl=timedelta(seconds=-5), tag="old").tenant),
        ]
    finally:
        await store.close()
    return tenants


async def test_list_table(seeded: list[Tenant], capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli("instances", "list") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "STATE", "CREATED", "EXPIRES", "TAG"]
    states = {line.split()[0]: line.split()[1] for line in lines[1:]}
    active, paused, expired = seeded
    assert states == {
        active.instance_id: "active",
        paused.instance_id: "paused",
        expired.instance_id: "expired",
    }
    assert "alpha" in out and "$argon2" not in out


async def test_list_json(seeded: list[Tenant], capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli("instances", "list", "--json") == 0
    out = capsys.readouterr().out
    rows = json.loads(out)
    assert {r["instance_id"] for r in rows} == {t.instance_id for t in seeded}
    assert set(rows[0]) == {"instance_id", "state", "created_at", "expires_at", "tag"}
    assert all(t.password_hash not in out for t in seeded)
    assert "hash" not in out


async def test_delete_exit_codes(seeded: list[Tenant], capsys: pytest.CaptureFixture[str]) -> None:
    target = seeded[0].instance_id
    assert await cli("instances", "delete", target) == 0
    assert capsys.readouterr().out.strip() == f"deleted {target}"
    assert await cli("instances", "delete", target) == 1
    assert f"no instance {target}" in capsys.readouterr().err
    assert await cli("instances", "delete", "not-an-id") == 2
    assert "not an instance id" in capsys.readouterr().err


async def test_delete_is_seen_by_a_watching_index(seeded: list[Tenant], tmp_path: Path) -> None:
    target = seeded[1]
    store = LocalStore(tmp_path / "data", poll_interval=0.05)
    index = TenantIndex()
    changes: list[tuple[Tenant | None, Tenant | None]] = []
    index.add_listener(lambda before, after: changes.append((before, after)))
    try:
        async with IndexSync(store, index) as sync:
            assert await sync.wait_synced(5)
            assert index.get(target.instance_id) is not None
            assert await cli("instances", "delete", target.instance_id) == 0
            await until(lambda: index.get(target.instance_id) is None)
    finally:
        await store.close()
    assert (target, None) in changes


async def test_missing_store_is_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ZERO_EMQX_STORE", "local")
    monkeypatch.setenv("ZERO_EMQX_DATA_DIR", str(tmp_path / "typo"))
    assert await cli("instances", "list") == 1
    assert "no tenant store" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()


async def test_bad_store_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ZERO_EMQX_STORE", "etcd")
    assert await cli("instances", "list") == 2
    assert "ZERO_EMQX_STORE" in capsys.readouterr().err


def test_format_table_empty() -> None:
    assert format_table([]) == "ID  STATE  CREATED  EXPIRES  TAG"


async def test_show_pause_resume_rotate(
    seeded: list[Tenant], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    active, _, expired = seeded
    target = active.instance_id
    assert await cli("instances", "show", target) == 0
    shown = capsys.readouterr().out
    assert f"instance_id: {target}" in shown and "state: active" in shown and "tag: alpha" in shown
    assert await cli("instances", "pause", target) == 0
    assert capsys.readouterr().out.strip() == f"paused {target}"
    assert await cli("instances", "show", target, "--json") == 0
    assert json.loads(capsys.readouterr().out)["state"] == "paused"
    assert await cli("instances", "resume", target) == 0
    assert capsys.readouterr().out.strip() == f"resumed {target}"
    assert await cli("instances", "rotate", target, "--json") == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["username"] == target
    store = LocalStore(tmp_path / "data")
    try:
        stored = await store.get(target)
    finally:
        await store.close()
    assert stored is not None and not stored.paused
    assert verify_password(stored.password_hash, rotated["password"])
    assert stored.password_hash != active.password_hash
    assert await cli("instances", "rotate", target) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"username: {target}\npassword: ") and "argon2" not in text

    for command in ("pause", "resume", "rotate"):
        assert await cli("instances", command, expired.instance_id) == 1
        assert "has expired" in capsys.readouterr().err
        assert await cli("instances", command, "emqx-00000000000000ab") == 1
        assert "no instance" in capsys.readouterr().err
        assert await cli("instances", command, "nope") == 2
    assert await cli("instances", "show", "emqx-00000000000000ab") == 1


async def test_commands_on_either_store(store: TenantStore) -> None:
    minted = make_tenant()
    tenant = await store.create(minted.tenant)
    iid = tenant.instance_id
    out = io.StringIO()
    assert await instances_command(parse("instances", "pause", iid), store, out=out) == 0
    paused = await store.get(iid)
    assert paused is not None and paused.paused
    assert await instances_command(parse("instances", "rotate", iid), store, out=out) == 0
    password = out.getvalue().rsplit("password: ", 1)[1].strip()
    rotated = await store.get(iid)
    assert rotated is not None and rotated.paused
    assert verify_password(rotated.password_hash, password)
    assert not verify_password(rotated.password_hash, minted.password)
    assert await instances_command(parse("instances", "delete", iid), store, out=out) == 0
    assert await store.get(iid) is None


async def test_show_lists_scoped_credentials_without_hashes(
    seeded: list[Tenant], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from dataclasses import replace

    from tenants.record import ScopedCredential

    active = seeded[0]
    reader = ScopedCredential(
        cred_id="s0a1b2c3",
        label="dashboard",
        password_hash=active.password_hash,
        allow_publish=False,
        allow_subscribe=True,
        created_at=active.created_at,
    )
    store = LocalStore(tmp_path / "data")
    try:
        await store.update(replace(active, credentials=(reader,)))
    finally:
        await store.close()

    assert await cli("instances", "show", active.instance_id) == 0
    text = capsys.readouterr().out
    assert "credentials: 1" in text
    assert f"{active.instance_id}.s0a1b2c3  dashboard  publish=no  subscribe=yes" in text
    assert await cli("instances", "show", active.instance_id, "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["credentials"] == [
        {
            "username": f"{active.instance_id}.s0a1b2c3",
            "label": "dashboard",
            "allow_publish": False,
            "allow_subscribe": True,
            "created_at": shown["created_at"],
        }
    ]
    assert "argon2" not in text and "argon2" not in json.dumps(shown)
