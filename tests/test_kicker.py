"""The job queue against the stand-in: deduplicated, bounded, retried, never dropped."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exhook.emqx_api import HttpxEmqxApi
from exhook.kick_plan import JobKind
from exhook.kicker import Kicker
from tenants.index import TenantIndex
from tenants.local_store import LocalStore
from tenants.settings import EmqxApiSettings
from tests.conftest import make_credential, make_tenant
from tests.fakes.emqx_api import FakeEmqxApi, running_emqx_api
from tests.waiting import until

KEY, SECRET = "zero-exhook", "kicker-test-secret"


# -- the queue --------------------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeEmqxApi]:
    async with running_emqx_api(KEY, SECRET, kick_delay=0.05) as api:
        yield api


@contextlib.asynccontextmanager
async def running_kicker(
    fake: FakeEmqxApi,
    tmp_path: Path,
    index: TenantIndex | None = None,
    concurrency: int = 2,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    rotation_grace: float = 0.0,
    api_type: type[HttpxEmqxApi] = HttpxEmqxApi,
) -> AsyncIterator[tuple[Kicker, LocalStore]]:
    store = LocalStore(tmp_path / "data", poll_interval=0.05)
    settings = EmqxApiSettings(fake.url, KEY, SECRET, timeout_seconds=0.3)
    async with api_type(settings) as api:
        kicker = Kicker(
            api,
            store,
            index if index is not None else TenantIndex(),
            clock=clock,
            retry_initial=0.02,
            retry_max=0.1,
            concurrency=concurrency,
            rotation_grace=rotation_grace,
        )
        tasks = [asyncio.create_task(kicker.run_scheduler())]
        tasks += [asyncio.create_task(kicker.run_worker()) for _ in range(concurrency)]
        try:
            yield kicker, store
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await store.close()


async def test_jobs_are_deduplicated_and_never_dropped(fake: FakeEmqxApi, tmp_path: Path) -> None:
    ids = [f"emqx-{i:016x}" for i in range(12)]
    for instance_id in ids:
        fake.connect(instance_id, f"{instance_id}-c")
    fake.fail_next(5, 500)
    fake.delay_next(8, 0.03)
    async with running_kicker(fake, tmp_path, concurrency=2) as (kicker, _):
        for instance_id in ids:
            kicker.request(instance_id, JobKind.PAUSE)
            kicker.request(instance_id, JobKind.REMOVE)  # upgraded, not doubled
            kicker.request(instance_id, JobKind.REAUTH)  # covered by REMOVE
        assert kicker.pending == len(ids)
        await until(lambda: kicker.pending == 0)
    assert kicker.namespaces_removed == len(ids)
    assert kicker.kick_retries >= 1
    assert fake.max_in_flight == 2  # bounded by the concurrency
    assert fake.namespaces == []
    assert all(fake.clients_of(i) == [] for i in ids)


async def test_non_instance_ids_are_refused(fake: FakeEmqxApi, tmp_path: Path) -> None:
    async with running_kicker(fake, tmp_path) as (kicker, _):
        for name in ("global", "EMQX-0123456789ABCDEF", "emqx-123", "../x"):
            kicker.request(name, JobKind.REMOVE)
        assert kicker.pending == 0
    assert fake.calls == []


async def test_removal_of_a_live_tenant_is_dropped(fake: FakeEmqxApi, tmp_path: Path) -> None:
    live = make_tenant().tenant
    fake.connect(live.instance_id, f"{live.instance_id}-c")
    async with running_kicker(fake, tmp_path) as (kicker, store):
        await store.create(live)
        kicker.request(live.instance_id, JobKind.REMOVE)
        await until(lambda: kicker.pending == 0)
        assert kicker.jobs_dropped == 1
    assert fake.calls == []
    assert fake.namespaces == [live.instance_id]


async def test_removal_of_an_expired_record_goes_ahead(fake: FakeEmqxApi, tmp_path: Path) -> None:
    expired = make_tenant(ttl=timedelta(seconds=-1)).tenant
    fake.connect(expired.instance_id, f"{expired.instance_id}-c")
    async with running_kicker(fake, tmp_path) as (kicker, store):
        await store.create(expired)
        kicker.request(expired.instance_id, JobKind.REMOVE)
        await until(lambda: kicker.pending == 0)
    assert kicker.namespaces_removed == 1
    assert fake.namespaces == []


async def test_reauth_spares_sessions_made_after_the_kick(
    fake: FakeEmqxApi, tmp_path: Path
) -> None:
    t = make_tenant().tenant.instance_id
    old = fake.connect(t, f"{t}-a")
    async with running_kicker(fake, tmp_path) as (kicker, _):
        kicker.request(t, JobKind.REAUTH)
        await until(lambda: kicker.pending == 0)
        new = fake.connect(t, f"{t}-a")  # reconnected with the new password
    assert fake.client(f"{t}-a") == new != old
    assert fake.calls_to("POST", "/clients/kickout/bulk")[0].body == [f"{t}-a"]
    assert fake.calls_to("POST", f"/mt/ns/{t}/kick_all_clients") == []


async def test_a_stronger_request_during_an_attempt_runs_after_it(
    fake: FakeEmqxApi, tmp_path: Path
) -> None:
    t = make_tenant().tenant.instance_id
    fake.connect(t, f"{t}-a")
    fake.delay_next(1, 0.2)  # the pause's first listing is slow
    async with running_kicker(fake, tmp_path) as (kicker, _):
        kicker.request(t, JobKind.PAUSE)
        await until(lambda: len(fake.calls) == 1)
        kicker.request(t, JobKind.REMOVE)  # the record is deleted meanwhile
        await until(lambda: kicker.pending == 0)
    assert fake.calls_to("DELETE", f"/mt/ns/{t}")
    assert t not in fake.namespaces


async def test_revoke_ends_one_scoped_username_only(fake: FakeEmqxApi, tmp_path: Path) -> None:
    t = make_tenant().tenant.instance_id
    owner, doomed, other = t, f"{t}.0000000a", f"{t}.0000000b"
    # Client ids named for their role: distinct whatever the random instance id ends with.
    for username, role in ((owner, "owner"), (doomed, "doomed"), (other, "other")):
        fake.connect(username, f"{t}-{role}")
    fake.connect(doomed, f"{t}-second")
    assert fake.namespaces == [t]  # one namespace: the first 21 characters
    async with running_kicker(fake, tmp_path) as (kicker, _):
        kicker.request(doomed, JobKind.REVOKE)
        await until(lambda: kicker.pending == 0)
    assert fake.clients_of(doomed) == []
    assert fake.clients_of(owner) == [f"{t}-owner"]
    assert fake.clients_of(other) == [f"{t}-other"]
    assert [c.path for c in fake.calls if c.path.startswith("/mt/")] == []  # ns untouched
    assert fake.calls_to("GET", "/clients")[0].query[0] == ("username", doomed)


@pytest.mark.parametrize("kind", [JobKind.PAUSE, JobKind.REMOVE])
async def test_pause_and_remove_cover_scoped_usernames_without_emqx_mt(
    fake: FakeEmqxApi, tmp_path: Path, kind: JobKind
) -> None:
    t = make_tenant(ttl=timedelta(seconds=-1)).tenant
    iid, scoped = t.instance_id, f"{t.instance_id}.0123abcd"
    fake.connect(iid, f"{iid}-owner")
    fake.connect(scoped, f"{iid}-device")
    fake.mt_enabled = False  # no namespace routes: only list + bulk kick ends sessions
    async with running_kicker(fake, tmp_path) as (kicker, _):
        kicker.request(iid, kind, [iid, scoped, "emqx-ffffffffffffffff.0123abcd", "x"])
        assert kicker.pending_usernames(iid) == {iid, scoped}  # others' names are dropped
        await until(lambda: kicker.pending == 0)
    assert fake.clients_of(iid) == fake.clients_of(scoped) == []
    listed = fake.calls_to("GET", "/clients")[0].query
    assert [v for k, v in listed if k == "username"] == [iid, scoped]


async def test_instance_jobs_are_refused_for_scoped_usernames(
    fake: FakeEmqxApi, tmp_path: Path
) -> None:
    async with running_kicker(fake, tmp_path) as (kicker, _):
        for kind in (JobKind.PAUSE, JobKind.REMOVE):
            kicker.request("emqx-0123456789abcdef.0123abcd", kind)
        kicker.request("emqx-0123456789abcdef.0123abcdx", JobKind.REVOKE)
        assert kicker.pending == 0


async def test_revoke_of_a_restored_credential_is_dropped(
    fake: FakeEmqxApi, tmp_path: Path
) -> None:
    device = make_credential().credential
    tenant = replace(make_tenant().tenant, credentials=(device,))
    username = tenant.username_of(device)
    fake.connect(username, f"{tenant.instance_id}-d")
    index = TenantIndex()
    index.put(tenant)  # the operator put the data key back before the job ran
    async with running_kicker(fake, tmp_path, index) as (kicker, _):
        kicker.request(username, JobKind.REVOKE)
        await until(lambda: kicker.pending == 0)
        assert kicker.jobs_dropped == 1
    assert fake.clients_of(username) == [f"{tenant.instance_id}-d"]
