"""Expiry and deletion end sessions and remove namespaces, on both stores, over real HTTP,
through faults, restarts and several replicas."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from datetime import timedelta

import pytest

from exhook.emqx_api import HttpxEmqxApi
from exhook.lifecycle import Lifecycle, LifecycleSettings
from tenants.hashing import hash_password
from tenants.index import IndexSync, TenantIndex
from tenants.operations import modify, remove_credential
from tenants.quotas import Quotas
from tenants.record import Tenant
from tenants.settings import EmqxApiSettings
from tenants.store import TenantStore
from tests.conftest import make_credential, make_tenant
from tests.fakes.emqx_api import FakeEmqxApi, running_emqx_api
from tests.hostile_values import make_unreadable
from tests.waiting import until

KEY, SECRET = "zero-exhook", "lifecycle-Secret-7d1c"
FAST = LifecycleSettings(
    reap_interval=0.05,
    reconcile_interval=0.3,
    kick_retry_initial=0.05,
    kick_retry_max=0.2,
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeEmqxApi]:
    async with running_emqx_api(KEY, SECRET, kick_delay=0.05) as api:
        yield api


@asynccontextmanager
async def running_lifecycle(
    store: TenantStore,
    fake: FakeEmqxApi | None,
    settings: LifecycleSettings = FAST,
    *,
    secret: str = SECRET,
    timeout: float = 0.3,
) -> AsyncIterator[Lifecycle]:
    """One ExHook replica's lifecycle: its own index, synced from `store`."""
    index = TenantIndex()
    async with AsyncExitStack() as stack:
        sync = await stack.enter_async_context(
            IndexSync(store, index, retry_initial=0.05, retry_max=0.2)
        )
        api = None
        if fake is not None:
            api_settings = EmqxApiSettings(fake.url, KEY, secret, timeout_seconds=timeout)
            api = await stack.enter_async_context(HttpxEmqxApi(api_settings))
        lifecycle = await stack.enter_async_context(Lifecycle(store, index, sync, api, settings))
        assert await sync.wait_synced(5)
        yield lifecycle


async def tenant_with_clients(
    store: TenantStore, fake: FakeEmqxApi, n: int = 2, **options: object
) -> Tenant:
    tenant = await store.create(make_tenant(**options).tenant)  # type: ignore[arg-type]
    for i in range(n):
        fake.connect(tenant.instance_id, f"{tenant.instance_id}-c{i}")
    return tenant


def removed(fake: FakeEmqxApi, instance_id: str) -> bool:
    return instance_id not in fake.namespaces and fake.clients_of(instance_id) == []


async def test_expiry_deletes_the_record_and_the_namespace(
    store: TenantStore, fake: FakeEmqxApi
) -> None:
    tenant = await tenant_with_clients(store, fake, ttl=timedelta(seconds=1))
    other = await tenant_with_clients(store, fake)
    for owner in (tenant, other):
        fake.retainer.retain(f"{owner.instance_id}/state")
    async with running_lifecycle(store, fake) as lifecycle:
        await until(lambda: removed(fake, tenant.instance_id), timeout=8)
        await until(lambda: lifecycle.reaped == 1)
        assert await store.get(tenant.instance_id) is None
        await until(lambda: lifecycle.pending_jobs == 0)
        assert lifecycle.namespaces_removed >= 1
        assert lifecycle.retained_purges >= 1
    [delete, *_] = fake.calls_to("DELETE", f"/mt/ns/{tenant.instance_id}")
    assert delete.auth_ok  # the configured key and secret were sent
    assert other.instance_id in fake.namespaces
    assert len(fake.clients_of(other.instance_id)) == 2
    # No retained message of the expired instance survives; the other's stays.
    assert fake.retainer.topics() == [f"{other.instance_id}/state"]


async def test_operator_deletion_removes_namespace_and_clients(
    store: TenantStore, fake: FakeEmqxApi
) -> None:
    tenant = await tenant_with_clients(store, fake, n=3)
    fake.connect(tenant.instance_id, f"{tenant.instance_id}-w", will_topic="last/words")
    fake.retainer.retain(f"{tenant.instance_id}/state")
    async with running_lifecycle(store, fake) as lifecycle:
        assert await store.delete(tenant.instance_id)
        await until(lambda: removed(fake, tenant.instance_id))
        await until(lambda: lifecycle.pending_jobs == 0)
        assert lifecycle.kicks_ok == lifecycle.namespaces_removed == 1
        assert lifecycle.retained_purges == 1
        assert lifecycle.reaped == 0
    assert fake.retainer.topics() == []  # its state and the will its kick published


async def test_a_record_made_unreadable_is_a_deletion(
    store: TenantStore, fake: FakeEmqxApi, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = await tenant_with_clients(store, fake, n=2)
    other = await tenant_with_clients(store, fake)
    async with running_lifecycle(store, fake) as lifecycle:
        await make_unreadable(store, tenant.instance_id)
        await until(lambda: removed(fake, tenant.instance_id), timeout=5)
        await until(lambda: lifecycle.pending_jobs == 0)
        assert await store.delete(other.instance_id)  # the index still follows the store
        await until(lambda: removed(fake, other.instance_id), timeout=5)
    warnings = [r for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warnings) == 1 and tenant.instance_id in warnings[0].getMessage()


async def test_without_emqx_mt_clients_are_kicked_one_by_one(
    store: TenantStore, fake: FakeEmqxApi
) -> None:
    fake.mt_enabled = False  # /mt routes answer 404
    tenant = await tenant_with_clients(store, fake, n=3)
    async with running_lifecycle(store, fake) as lifecycle:
        assert await store.delete(tenant.instance_id)
        await until(lambda: fake.clients_of(tenant.instance_id) == [])
        await until(lambda: lifecycle.pending_jobs == 0)
    assert fake.calls_to("POST", "/clients/kickout/bulk")


async def test_pause_kicks_and_keeps_the_namespace_unpause_does_nothing(
    store: TenantStore, fake: FakeEmqxApi
) -> None:
    tenant = await tenant_with_clients(store, fake)
    ns = tenant.instance_id
    async with running_lifecycle(store, fake) as lifecycle:
        paused = await store.update(_with(tenant, paused=True))
        await until(lambda: fake.clients_of(ns) == [])
        await until(lambda: lifecycle.kicks_ok == 1)
        # Listed and kicked by username: EMQX's namespace kicker would also end a client
        # admitted again after a resume, whenever it reaches it.
        assert not fake.calls_to("POST", f"/mt/ns/{ns}/kick_all_clients")
        assert not fake.kick_running(ns)
        assert ns in fake.namespaces
        await store.update(_with(paused, paused=False))
        fake.connect(ns, f"{ns}-again")  # the hook allows it again
        kicks = len(fake.calls_to("POST", "/clients/kickout/bulk"))
        runs = lifecycle.reconcile_runs
        await until(lambda: lifecycle.reconcile_runs > runs)  # it asks nothing either
        assert lifecycle.pending_jobs == 0
    assert fake.clients_of(ns) == [f"{ns}-again"]
    assert len(fake.calls_to("POST", "/clients/kickout/bulk")) == kicks
    assert not fake.calls_to("DELETE", f"/mt/ns/{ns}")
    assert not fake.calls_to("DELETE", f"/mqtt/retainer/message/{ns}/#")  # retained kept


async def test_password_hash_edit_kicks_sessions(store: TenantStore, fake: FakeEmqxApi) -> None:
    tenant = await tenant_with_clients(store, fake)
    ns = tenant.instance_id
    async with running_lifecycle(store, fake) as lifecycle:
        await store.update(_with(tenant, password_hash=hash_password("a-new-password")))
        await until(lambda: fake.clients_of(ns) == [])
        await until(lambda: lifecycle.kicks_ok == 1)
        fake.connect(ns, f"{ns}-c0")  # back with the new password: left alone
        runs = lifecycle.reconcile_runs
        await until(lambda: lifecycle.reconcile_runs > runs and lifecycle.pending_jobs == 0)
    assert fake.clients_of(ns) == [f"{ns}-c0"]
    assert ns in fake.namespaces


# -- faults ---------------------------------------------------------------------------------------


async def test_server_errors_and_timeouts_are_retried(
    store: TenantStore, fake: FakeEmqxApi
) -> None:
    tenant = await tenant_with_clients(store, fake)
    async with running_lifecycle(store, fake, timeout=0.1) as lifecycle:
        await until(lambda: lifecycle.reconcile_runs >= 1)
        fake.fail_next(3, 500)
        fake.delay_next(2, 0.3)
        assert await store.delete(tenant.instance_id)
        await until(lambda: removed(fake, tenant.instance_id))
        await until(lambda: lifecycle.pending_jobs == 0)
        assert lifecycle.kick_retries >= 2


async def test_emqx_down_for_a_while_then_back(store: TenantStore, fake: FakeEmqxApi) -> None:
    tenant = await tenant_with_clients(store, fake)
    async with running_lifecycle(store, fake) as lifecycle:
        await fake.set_down(True)
        assert await store.delete(tenant.instance_id)
        await until(lambda: lifecycle.kick_retries >= 2)
        assert lifecycle.pending_jobs == 1  # kept, not dropped
        assert fake.clients_of(tenant.instance_id)
        await fake.set_down(False)
        await until(lambda: removed(fake, tenant.instance_id))
        await until(lambda: lifecycle.pending_jobs == 0)


async def test_pause_while_a_previous_kick_runs(store: TenantStore, fake: FakeEmqxApi) -> None:
    tenant = await tenant_with_clients(store, fake)
    ns = tenant.instance_id
    fake.conflict_for(5)  # EMQX's kicker "runs" and kicks nothing: 409
    async with running_lifecycle(store, fake) as lifecycle:
        await store.update(_with(tenant, paused=True))
        await until(lambda: fake.clients_of(ns) == [])  # bulk kick of the leftovers
        await until(lambda: lifecycle.kicks_ok == 1)
    assert ns in fake.namespaces


async def test_wrong_api_secret_never_logged(
    store: TenantStore, fake: FakeEmqxApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wrong-Secret-Never-Logged-1"
    tenant = await tenant_with_clients(store, fake)
    async with running_lifecycle(store, fake, secret=wrong) as lifecycle:
        assert await store.delete(tenant.instance_id)
        await until(lambda: lifecycle.kick_retries >= 2)
        assert lifecycle.pending_jobs == 1
    assert "EMQX_API_KEY and EMQX_API_SECRET" in caplog.text
    assert tenant.instance_id in caplog.text
    for secret in (wrong, SECRET, tenant.password_hash):
        assert secret not in caplog.text


# -- restarts and replicas ------------------------------------------------------------------------


async def test_deletion_while_down_is_reconciled_at_start(
    store: TenantStore, fake: FakeEmqxApi
) -> None:
    tenant = await tenant_with_clients(store, fake)
    live = await tenant_with_clients(store, fake)
    paused = await tenant_with_clients(store, fake)
    assert await store.delete(tenant.instance_id)  # nobody running: no kick
    await store.update(_with(paused, paused=True))
    fake.add_namespace("global")
    fake.connect("not-a-tenant", "not-a-tenant-c")
    slow = LifecycleSettings(
        reap_interval=0.05, reconcile_interval=60, kick_retry_initial=0.05, kick_retry_max=0.2
    )
    async with running_lifecycle(store, fake, slow) as lifecycle:
        await until(lambda: removed(fake, tenant.instance_id))
        await until(lambda: fake.clients_of(paused.instance_id) == [])
        await until(lambda: lifecycle.pending_jobs == 0)
        assert lifecycle.reconcile_runs == 1
    assert paused.instance_id in fake.namespaces
    assert len(fake.clients_of(live.instance_id)) == 2
    assert {"global", "not-a-tenant", live.instance_id} <= set(fake.namespaces)
    touched = {c.path for c in fake.calls if c.method != "GET"}
    assert not any(n in p for p in touched for n in ("global", "not-a-tenant", live.instance_id))


async def test_reconcile_after_emqx_was_down_at_start(
    store: TenantStore, fake: FakeEmqxApi
) -> None:
    tenant = await tenant_with_clients(store, fake)
    assert await store.delete(tenant.instance_id)
    await fake.set_down(True)
    async with running_lifecycle(store, fake) as lifecycle:
        await asyncio.sleep(0.3)
        assert lifecycle.reconcile_runs == 0
        await fake.set_down(False)
        await until(lambda: removed(fake, tenant.instance_id))


async def test_several_replicas(
    store: TenantStore, fake: FakeEmqxApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    live = [await tenant_with_clients(store, fake) for _ in range(3)]
    expiring = [await tenant_with_clients(store, fake, ttl=timedelta(seconds=1)) for _ in range(2)]
    deleted = [await tenant_with_clients(store, fake) for _ in range(3)]
    async with running_lifecycle(store, fake) as a, running_lifecycle(store, fake) as b:
        for t in deleted:
            assert await store.delete(t.instance_id)
        late = await tenant_with_clients(store, fake)  # created while both run
        for t in [*expiring, *deleted]:
            await until(lambda t=t: removed(fake, t.instance_id), timeout=8)  # type: ignore[misc]
        await until(lambda: a.pending_jobs == b.pending_jobs == 0)
        assert a.reaped + b.reaped == len(expiring)  # each record deleted once
        assert a.reconcile_runs >= 1 and b.reconcile_runs >= 1
    for t in [*live, late]:
        assert t.instance_id in fake.namespaces
        assert len(fake.clients_of(t.instance_id)) == 2
        assert not [c for c in fake.calls if t.instance_id in c.path and c.method != "GET"]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_without_an_api_only_the_reaper_runs(
    store: TenantStore, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = await store.create(make_tenant(ttl=timedelta(seconds=-1)).tenant)
    async with running_lifecycle(store, None) as lifecycle:
        await until(lambda: lifecycle.reaped == 1)
        assert lifecycle.pending_jobs == 0
    assert await store.get(tenant.instance_id) is None
    assert "EMQX_API_URL is not set" in caplog.text


def test_settings_from_environ() -> None:
    assert LifecycleSettings.from_environ({}) == LifecycleSettings(1.0, 300.0, 0.5, 30.0, 4)
    env = {
        "REAP_INTERVAL_SECONDS": "2",
        "RECONCILE_INTERVAL_SECONDS": "60",
        "KICK_RETRY_INITIAL_SECONDS": "0.1",
        "KICK_RETRY_MAX_SECONDS": "5",
        "KICK_CONCURRENCY": "8",
    }
    assert LifecycleSettings.from_environ(env) == LifecycleSettings(2.0, 60.0, 0.1, 5.0, 8)


def _with(tenant: Tenant, **changes: object) -> Tenant:
    from dataclasses import replace

    return replace(tenant, **changes)  # type: ignore[arg-type]


async def test_scoped_credentials_are_kicked_with_and_without_their_instance(
    store: TenantStore, fake: FakeEmqxApi
) -> None:
    """Without emqx_mt nothing but list + bulk kick ends a session: the jobs must list the
    scoped usernames themselves."""
    fake.mt_enabled = False
    reader, device = make_credential(allow_subscribe=True), make_credential()
    base = make_tenant(ttl=timedelta(seconds=2)).tenant
    tenant = await store.create(replace(base, credentials=(reader.credential, device.credential)))
    owner, reader_name, device_name = tenant.usernames()
    for username in tenant.usernames():
        fake.connect(username, f"{tenant.instance_id}-{username[-3:]}")
    async with running_lifecycle(store, fake) as lifecycle:
        await modify(store, tenant.instance_id, remove_credential(reader.credential.cred_id))
        await until(lambda: fake.clients_of(reader_name) == [])
        await until(lambda: lifecycle.pending_jobs == 0)
        assert len(fake.clients_of(owner)) == len(fake.clients_of(device_name)) == 1
        # Expiry: the reaper's removal lists every username the record had.
        await until(lambda: fake.clients_of(owner) == fake.clients_of(device_name) == [])
        await until(lambda: lifecycle.pending_jobs == 0)
    assert await store.get(tenant.instance_id) is None


async def test_the_retained_quota_is_enforced_for_live_instances(
    store: TenantStore, fake: FakeEmqxApi
) -> None:
    tenant = await store.create(make_tenant().tenant)
    for n in range(4):
        fake.retainer.retain(f"{tenant.instance_id}/state/{n}")
    settings = replace(FAST, retained_check_interval=0.05, quotas=Quotas(retained_messages=2))
    async with running_lifecycle(store, fake, settings) as lifecycle:
        await until(lambda: lifecycle.retained_over_quota == 2)
    assert fake.retainer.topics() == [f"{tenant.instance_id}/state/{n}" for n in (0, 1)]
