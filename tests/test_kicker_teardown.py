"""A removal leaves nothing behind, in order: namespace deleted, every session kicked
until none is listed, then the instance's retained messages purged (wills included),
retried until EMQX answers that nothing matches."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exhook.kick_plan import JobKind
from tests.conftest import make_tenant
from tests.fakes.emqx_api import Call, FakeEmqxApi, running_emqx_api
from tests.test_kicker import KEY, SECRET, running_kicker
from tests.waiting import until

OTHER = "emqx-ffffffffffffff00"


@pytest.fixture
async def fake() -> AsyncIterator[FakeEmqxApi]:
    async with running_emqx_api(KEY, SECRET, kick_delay=0.05) as api:
        yield api


def _step(call: Call, ns: str) -> str | None:
    if call.method == "DELETE" and call.path == f"/mt/ns/{ns}":
        return "delete namespace"
    if call.method == "GET" and call.path == "/clients":
        return "list"
    if call.method == "POST" and call.path == "/clients/kickout/bulk":
        return "kick"
    if call.method == "DELETE" and call.path == f"/mqtt/retainer/message/{ns}/#":
        return "purge"
    return None


def steps(fake: FakeEmqxApi, ns: str) -> list[str]:
    return [s for s in (_step(c, ns) for c in fake.calls) if s is not None]


async def test_removal_purges_retained_messages_after_the_sessions(
    fake: FakeEmqxApi, tmp_path: Path
) -> None:
    t = make_tenant().tenant.instance_id
    scoped = f"{t}.0123abcd"
    fake.mt.kick_delay = 60.0  # EMQX's own namespace kicker never gets there: ours must
    for n in range(3):
        fake.retainer.retain(f"{t}/state/{n}")
    fake.retainer.retain(f"{OTHER}/state/0")
    fake.retainer.retain("global/state")
    fake.connect(t, f"{t}-owner", will_topic="status/owner")  # retained will, published on kick
    fake.connect(scoped, f"{t}-device", will_topic="status/device")
    async with running_kicker(fake, tmp_path) as (kicker, _):
        kicker.request(t, JobKind.REMOVE, [t, scoped])
        await until(lambda: kicker.pending == 0)
    assert fake.clients_of(t) == fake.clients_of(scoped) == []
    assert fake.retainer.topics(f"{t}/#") == []  # the wills too
    assert fake.retainer.topics() == [f"{OTHER}/state/0", "global/state"]
    order = steps(fake, t)
    # The namespace first, then sessions until none is listed, and only then the purge:
    # the kicks published retained wills that the purge must catch.
    assert order[:3] == ["delete namespace", "list", "kick"]
    last_list = len(order) - 1 - order[::-1].index("list")
    assert order.index("purge") > last_list > order.index("kick")
    assert order[-1] == "purge"
    assert kicker.namespaces_removed == kicker.retained_purges == 1


async def test_the_purge_is_repeated_until_emqx_says_nothing_matches(
    fake: FakeEmqxApi, tmp_path: Path
) -> None:
    t = make_tenant().tenant.instance_id
    fake.retainer.retain(f"{t}/a")
    async with running_kicker(fake, tmp_path) as (kicker, _):
        kicker.request(t, JobKind.REMOVE)
        await until(lambda: kicker.pending == 0)
    purges = fake.calls_to("DELETE", f"/mqtt/retainer/message/{t}/#")
    assert len(purges) == 2  # 204 deleted, then 404: confirmed
    assert kicker.retained_purge_deletes == 1
    assert kicker.retained_purges == 1


async def test_a_failed_purge_is_retried(fake: FakeEmqxApi, tmp_path: Path) -> None:
    t = make_tenant().tenant.instance_id
    fake.retainer.retain(f"{t}/a")
    async with running_kicker(fake, tmp_path) as (kicker, _):
        fake.fail_next(2, 503, path="/mqtt/retainer/")
        kicker.request(t, JobKind.REMOVE)
        await until(lambda: kicker.pending == 0)
    assert fake.retainer.topics() == []
    assert len(fake.calls_to("DELETE", f"/mqtt/retainer/message/{t}/#")) == 4  # 503 503 204 404
    assert kicker.kick_retries == 2
    assert kicker.retained_purges == 1


async def test_a_removal_stays_pending_while_emqx_is_down(
    fake: FakeEmqxApi, tmp_path: Path
) -> None:
    t = make_tenant().tenant.instance_id
    fake.retainer.retain(f"{t}/a")
    async with running_kicker(fake, tmp_path) as (kicker, _):
        await fake.set_down(True)
        kicker.request(t, JobKind.REMOVE)
        await until(lambda: kicker.kick_retries >= 2)
        assert kicker.pending == 1
        await fake.set_down(False)
        await until(lambda: kicker.pending == 0)
    assert fake.retainer.topics() == []


@pytest.mark.parametrize("kind", [JobKind.PAUSE, JobKind.REVOKE, JobKind.REAUTH])
async def test_only_a_removal_purges(fake: FakeEmqxApi, tmp_path: Path, kind: JobKind) -> None:
    tenant = make_tenant(paused=kind is JobKind.PAUSE).tenant
    t = tenant.instance_id
    subject = f"{t}.0123abcd" if kind is JobKind.REVOKE else t
    fake.retainer.retain(f"{t}/a")
    fake.connect(subject, f"{t}-c")
    async with running_kicker(fake, tmp_path) as (kicker, _):
        kicker.request(subject, kind)
        await until(lambda: kicker.pending == 0)
    assert fake.clients_of(subject) == []
    assert fake.retainer.topics() == [f"{t}/a"]
    assert "purge" not in steps(fake, t)


async def test_a_live_record_again_is_neither_kicked_nor_purged(
    fake: FakeEmqxApi, tmp_path: Path
) -> None:
    live = make_tenant().tenant
    t = live.instance_id
    fake.retainer.retain(f"{t}/a")
    fake.connect(t, f"{t}-c")
    async with running_kicker(fake, tmp_path) as (kicker, store):
        await store.create(live)
        kicker.request(t, JobKind.REMOVE)
        await until(lambda: kicker.pending == 0)
        assert kicker.jobs_dropped == 1
    assert fake.retainer.topics() == [f"{t}/a"]
    assert fake.clients_of(t) == [f"{t}-c"]
    assert fake.calls == []
