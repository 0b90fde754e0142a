"""What reconcile removes (pure), and one pass against the stand-in and a real store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from exhook.emqx_api import HttpxEmqxApi
from exhook.kick_plan import JobKind
from exhook.kicker import Kicker
from exhook.reconciler import Reconciler, plan_reconcile, retained_namespaces
from tenants.index import IndexSync, TenantIndex
from tenants.settings import EmqxApiSettings
from tenants.store import TenantStore
from tests.conftest import make_credential, make_tenant
from tests.fakes.emqx_api import FakeEmqxApi, running_emqx_api
from tests.waiting import until

KEY, SECRET = "zero-exhook", "reconciler-test-secret"
FOREIGN = ["global", "tenant-a", "EMQX-0123456789ABCDEF", "emqx-0123", "emqx-0123456789abcdef0"]


def test_plan_reconcile() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    base = replace(make_tenant().tenant, expires_at=now + timedelta(days=1))
    live = replace(base, instance_id="emqx-000000000000000a")
    paused = replace(base, instance_id="emqx-000000000000000b", paused=True)
    expired = replace(base, instance_id="emqx-000000000000000c", expires_at=now)
    expired_paused = replace(expired, instance_id="emqx-000000000000000e", paused=True)
    orphan = "emqx-000000000000000d"
    tenants = {t.instance_id: t for t in (live, paused, expired, expired_paused)}
    namespaces = [*FOREIGN, live.instance_id, paused.instance_id, expired.instance_id, orphan]
    plan = plan_reconcile(namespaces, tenants, now)
    assert plan.suspects == (expired.instance_id, orphan)
    assert plan.paused == (paused.instance_id,)
    assert plan_reconcile([], {}, now).suspects == ()
    # Namespaces EMQX forgot but whose retained messages are still there count too.
    retained = retained_namespaces(
        [f"{orphan}/a", f"{live.instance_id}/b", "global/x", "emqx-0123/y", "$SYS/z", "top"]
    )
    assert retained == {orphan, live.instance_id, "global", "emqx-0123", "$SYS", "top"}
    assert plan_reconcile([], tenants, now, retained).suspects == (orphan,)


@pytest.fixture
async def fake() -> AsyncIterator[FakeEmqxApi]:
    async with running_emqx_api(KEY, SECRET) as api:
        yield api


async def test_a_tenant_the_index_has_not_seen_is_not_removed(
    store: TenantStore, fake: FakeEmqxApi
) -> None:
    fresh = await store.create(make_tenant().tenant)  # created by another replica just now
    gone = make_tenant().tenant.instance_id  # a namespace whose record is gone
    paused = await store.create(make_tenant(paused=True).tenant)
    for name in FOREIGN:
        fake.add_namespace(name)  # (a client named so would land in the first 21 characters')
    for name in (fresh.instance_id, gone, paused.instance_id):
        fake.connect(name, f"{name}-c")
    index = TenantIndex()
    index.put(paused)  # the lagging index knows only the paused tenant
    sync = IndexSync(store, index)
    clock = lambda: datetime.now(UTC)  # noqa: E731
    settings = EmqxApiSettings(fake.url, KEY, SECRET, timeout_seconds=0.5)
    async with HttpxEmqxApi(settings) as api:
        kicker = Kicker(api, store, index, clock=clock)
        reconciler = Reconciler(api, store, index, sync, kicker, clock=clock)
        report = await reconciler.reconcile_once()
    assert report.removals == (gone,)
    assert report.pause_kicks == (paused.instance_id,)
    assert kicker.pending_kind(gone) is JobKind.REMOVE
    assert kicker.pending_kind(paused.instance_id) is JobKind.PAUSE
    assert kicker.pending == 2  # nothing for the fresh tenant or the foreign namespaces
    assert reconciler.runs == 1


async def test_reconcile_retries_until_emqx_answers(store: TenantStore, fake: FakeEmqxApi) -> None:
    index = TenantIndex()
    clock = lambda: datetime.now(UTC)  # noqa: E731
    settings = EmqxApiSettings(fake.url, KEY, SECRET, timeout_seconds=0.5)
    fake.fail_next(3, 502)
    async with HttpxEmqxApi(settings) as api, IndexSync(store, index) as sync:
        kicker = Kicker(api, store, index, clock=clock)
        reconciler = Reconciler(
            api, store, index, sync, kicker, clock=clock, interval=60, retry_initial=0.02
        )
        task = asyncio.create_task(reconciler.run())
        try:
            await until(lambda: reconciler.runs > 0)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert reconciler.failures == 3


async def test_a_paused_tenant_with_only_a_scoped_session_is_kicked(
    store: TenantStore, fake: FakeEmqxApi
) -> None:
    device = make_credential().credential
    paused = replace(make_tenant(paused=True).tenant, credentials=(device,))
    paused = await store.create(paused)
    scoped = paused.username_of(device)
    fake.connect(scoped, f"{paused.instance_id}-device")  # the owner is not connected
    index = TenantIndex()
    index.put(paused)
    clock = lambda: datetime.now(UTC)  # noqa: E731
    settings = EmqxApiSettings(fake.url, KEY, SECRET, timeout_seconds=0.5)
    async with HttpxEmqxApi(settings) as api:
        kicker = Kicker(api, store, index, clock=clock)
        reconciler = Reconciler(api, store, index, IndexSync(store, index), kicker, clock=clock)
        report = await reconciler.reconcile_once()
    assert report.pause_kicks == (paused.instance_id,)
    assert kicker.pending_usernames(paused.instance_id) == {paused.instance_id, scoped}


async def test_retained_messages_of_a_gone_instance_are_purged(
    store: TenantStore, fake: FakeEmqxApi
) -> None:
    """The namespace is already gone from EMQX (DELETE /mt/ns/{ns} went through, then the
    hook stopped): only the retainer still knows the instance."""
    live = await store.create(make_tenant().tenant)
    gone = make_tenant().tenant.instance_id
    for topic in (f"{gone}/state/1", f"{gone}/state/2", f"{live.instance_id}/state", "global/x"):
        fake.retainer.retain(topic)
    fake.retainer.retain("emqx-0123/not-an-instance")
    index = TenantIndex()
    index.put(live)
    clock = lambda: datetime.now(UTC)  # noqa: E731
    settings = EmqxApiSettings(fake.url, KEY, SECRET, timeout_seconds=0.5)
    async with HttpxEmqxApi(settings) as api:
        kicker = Kicker(api, store, index, clock=clock, retry_initial=0.02)
        reconciler = Reconciler(api, store, index, IndexSync(store, index), kicker, clock=clock)
        report = await reconciler.reconcile_once()
        assert report.removals == report.retained_orphans == (gone,)
        assert reconciler.retained_orphans == 1
        assert fake.namespaces == []
        workers = [
            asyncio.create_task(kicker.run_worker()),
            asyncio.create_task(kicker.run_scheduler()),
        ]
        try:
            await until(lambda: kicker.pending == 0)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
    assert fake.retainer.topics() == [
        f"{live.instance_id}/state",
        "global/x",
        "emqx-0123/not-an-instance",
    ]
    assert kicker.retained_purges == 1


async def test_a_retainer_that_cannot_be_listed_does_not_stop_the_pass(
    store: TenantStore, fake: FakeEmqxApi
) -> None:
    gone = make_tenant().tenant.instance_id
    fake.add_namespace(gone)
    fake.fail_next(1, 400, path="/mqtt/retainer/")  # "This API only support built in database"
    index = TenantIndex()
    clock = lambda: datetime.now(UTC)  # noqa: E731
    settings = EmqxApiSettings(fake.url, KEY, SECRET, timeout_seconds=0.5)
    async with HttpxEmqxApi(settings) as api:
        kicker = Kicker(api, store, index, clock=clock)
        reconciler = Reconciler(api, store, index, IndexSync(store, index), kicker, clock=clock)
        report = await reconciler.reconcile_once()
    assert report.removals == (gone,)
    assert reconciler.retained_failures == 1 and reconciler.runs == 1
