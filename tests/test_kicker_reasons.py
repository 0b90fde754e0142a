"""Every kick job re-checks, before each kick, that its reason still holds, and a
password change also ends the sessions EMQX registers within the grace window."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exhook.emqx_api import EmqxClient, HttpxEmqxApi
from exhook.kick_plan import JobKind
from tenants.index import TenantIndex
from tenants.record import Tenant
from tests.conftest import make_credential, make_tenant
from tests.fakes.emqx_api import FakeEmqxApi, running_emqx_api
from tests.test_kicker import KEY, SECRET, running_kicker
from tests.waiting import until


@pytest.fixture
async def fake() -> AsyncIterator[FakeEmqxApi]:
    # EMQX's own namespace kicker lags far behind: only our kicks end sessions here.
    async with running_emqx_api(KEY, SECRET, kick_delay=60.0) as api:
        yield api


def kicked(fake: FakeEmqxApi) -> list[str]:
    return [i for c in fake.calls_to("POST", "/clients/kickout/bulk") for i in c.body]


async def test_pause_resume_connect_while_the_kicker_lags_keeps_the_new_client(
    fake: FakeEmqxApi, tmp_path: Path
) -> None:
    tenant = make_tenant().tenant
    t = tenant.instance_id
    index = TenantIndex()
    index.put(replace(tenant, paused=True))
    fake.delay_next(1, 0.3)  # the kicker's first listing is slow to come back
    async with running_kicker(fake, tmp_path, index) as (kicker, _):
        kicker.request(t, JobKind.PAUSE, [t])
        await until(lambda: len(fake.calls) == 1)  # the listing is under way
        index.put(tenant)  # resumed
        fake.connect(t, f"{t}-new")  # and admitted again
        await until(lambda: kicker.pending == 0)
        assert kicker.jobs_dropped == 1
    assert fake.clients_of(t) == [f"{t}-new"]
    assert kicked(fake) == []
    assert not fake.calls_to("POST", f"/mt/ns/{t}/kick_all_clients")
    assert not fake.kick_running(t)  # no EMQX namespace kicker left to reach it later


def api_changing_records(change: Callable[[], None]) -> type[HttpxEmqxApi]:
    """An API whose first client listing is followed, before the caller goes on, by a
    record change (the watch event arriving while the kicker awaited EMQX)."""

    class ChangingApi(HttpxEmqxApi):
        changed = False

        async def list_clients(self, username: str, *more: str) -> list[EmqxClient]:
            clients = await super().list_clients(username, *more)
            if not ChangingApi.changed:
                ChangingApi.changed = True
                change()
            return clients

    return ChangingApi


async def test_a_resume_during_the_listing_stops_the_kick(
    fake: FakeEmqxApi, tmp_path: Path
) -> None:
    tenant = make_tenant().tenant
    t = tenant.instance_id
    index = TenantIndex()
    index.put(replace(tenant, paused=True))
    fake.connect(t, f"{t}-c")
    api_type = api_changing_records(lambda: index.put(tenant))
    async with running_kicker(fake, tmp_path, index, api_type=api_type) as (kicker, _):
        kicker.request(t, JobKind.PAUSE)
        await until(lambda: kicker.pending == 0)
        assert kicker.jobs_dropped == 1
    assert fake.clients_of(t) == [f"{t}-c"]
    assert kicked(fake) == []


async def test_a_credential_restored_during_the_listing_is_not_kicked(
    fake: FakeEmqxApi, tmp_path: Path
) -> None:
    device = make_credential().credential
    tenant = replace(make_tenant().tenant, credentials=(device,))
    username = tenant.username_of(device)
    index = TenantIndex()
    index.put(replace(tenant, credentials=()))  # removed
    fake.connect(username, f"{tenant.instance_id}-d")
    api_type = api_changing_records(lambda: index.put(tenant))  # put back meanwhile
    async with running_kicker(fake, tmp_path, index, api_type=api_type) as (kicker, _):
        kicker.request(username, JobKind.REVOKE)
        await until(lambda: kicker.pending == 0)
        assert kicker.jobs_dropped == 1
    assert fake.clients_of(username) == [f"{tenant.instance_id}-d"]
    assert kicked(fake) == []


async def test_a_record_recreated_during_the_listing_is_neither_kicked_nor_purged(
    fake: FakeEmqxApi, tmp_path: Path
) -> None:
    tenant: Tenant = make_tenant().tenant
    t = tenant.instance_id
    fake.connect(t, f"{t}-c")
    fake.retainer.retain(f"{t}/a")
    index = TenantIndex()
    api_type = api_changing_records(lambda: index.put(tenant))
    async with running_kicker(fake, tmp_path, index, api_type=api_type) as (kicker, _):
        kicker.request(t, JobKind.REMOVE)
        await until(lambda: kicker.pending == 0)
        assert kicker.jobs_dropped == 1
    assert fake.clients_of(t) == [f"{t}-c"]
    assert fake.retainer.topics() == [f"{t}/a"]


async def test_a_password_change_spares_sessions_made_after_it_while_the_kicker_lags(
    fake: FakeEmqxApi, tmp_path: Path
) -> None:
    t = make_tenant().tenant.instance_id
    fake.connect(t, f"{t}-old")
    fake.delay_next(1, 0.3)
    async with running_kicker(fake, tmp_path) as (kicker, _):
        kicker.request(t, JobKind.REAUTH)
        await until(lambda: len(fake.calls) == 1)
        fake.connect(t, f"{t}-new")  # with the new password, before the kicker looked
        await until(lambda: kicker.pending == 0)
    assert fake.clients_of(t) == [f"{t}-new"]
    assert kicked(fake) == [f"{t}-old"]


async def test_a_password_change_ends_sessions_registered_within_the_grace_window(
    fake: FakeEmqxApi, tmp_path: Path
) -> None:
    t = make_tenant().tenant.instance_id
    changed_at = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    now = [changed_at]
    fake.connect(t, f"{t}-old", connected_at=changed_at - timedelta(seconds=30))
    async with running_kicker(fake, tmp_path, clock=lambda: now[0], rotation_grace=5.0) as (
        kicker,
        _,
    ):
        kicker.request(t, JobKind.REAUTH)
        await until(lambda: fake.clients_of(t) == [])
        # Authenticated with the old password just before the change; EMQX registered
        # the session only after the kicker's first listing.
        fake.connect(t, f"{t}-late", connected_at=changed_at + timedelta(seconds=1))
        fake.connect(t, f"{t}-fresh", connected_at=changed_at + timedelta(seconds=6))
        await until(lambda: fake.clients_of(t) == [f"{t}-fresh"])
        assert kicker.pending == 1  # the window is still open: it keeps looking
        now[0] = changed_at + timedelta(seconds=5, microseconds=1)
        await until(lambda: kicker.pending == 0)
    assert fake.clients_of(t) == [f"{t}-fresh"]  # connected after the window: new password
    assert sorted(kicked(fake)) == [f"{t}-late", f"{t}-old"]
    assert kicker.kicks_ok == 1
