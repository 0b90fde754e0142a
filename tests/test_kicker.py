"""What a record change asks of EMQX (pure), and the job queue against the stand-in."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exhook.emqx_api import EmqxApiSettings, EmqxClient, HttpxEmqxApi
from exhook.kicker import (
    JobKind,
    Kicker,
    backoff_delay,
    job_for_change,
    merge_kinds,
    read_record,
    sessions_to_end,
)
from tenants.errors import InvalidRecord
from tenants.index import TenantIndex
from tenants.local_store import LocalStore
from tenants.record import Tenant
from tests.conftest import make_tenant
from tests.fakes.emqx_api import FakeEmqxApi, eventually, running_emqx_api

KEY, SECRET = "zero-exhook", "kicker-test-secret"


# -- pure --------------------------------------------------------------------------------------


def test_job_for_change() -> None:
    t = make_tenant().tenant
    assert job_for_change(None, t) is None  # created
    assert job_for_change(t, None) is JobKind.REMOVE  # deleted, whoever did it
    assert job_for_change(t, replace(t, paused=True)) is JobKind.PAUSE
    assert job_for_change(replace(t, paused=True), t) is None  # unpause: the hook allows again
    assert job_for_change(t, replace(t, password_hash="$argon2id$new")) is JobKind.REAUTH
    paused_and_rehashed = replace(t, paused=True, password_hash="$argon2id$new")
    assert job_for_change(t, paused_and_rehashed) is JobKind.PAUSE
    assert job_for_change(t, replace(t, tag="x", revision="9")) is None


def test_merge_kinds_keeps_the_stronger() -> None:
    assert merge_kinds(JobKind.REAUTH, JobKind.REMOVE) is JobKind.REMOVE
    assert merge_kinds(JobKind.REMOVE, JobKind.PAUSE) is JobKind.REMOVE
    assert merge_kinds(JobKind.PAUSE, JobKind.REAUTH) is JobKind.PAUSE


def test_backoff_delay() -> None:
    assert [backoff_delay(n, 0.5, 30) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff_delay(10, 0.5, 30) == 30
    assert backoff_delay(10_000, 0.5, 30) == 30
    assert backoff_delay(1, 1.0, 30, jitter=0.2) == pytest.approx(0.8)


def test_sessions_to_end() -> None:
    a, b = EmqxClient("c1", "u", "t1"), EmqxClient("c2", "u", "t1")
    a_again = EmqxClient("c1", "u", "t2")  # reconnected after the kick
    assert sessions_to_end(JobKind.REMOVE, [a, b], None) == [a, b]
    assert sessions_to_end(JobKind.PAUSE, [a_again], frozenset({("c1", "t1")})) == [a_again]
    snapshot = frozenset({("c1", "t1"), ("c2", "t1")})
    assert sessions_to_end(JobKind.REAUTH, [a_again, b], snapshot) == [b]


# -- the queue --------------------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeEmqxApi]:
    async with running_emqx_api(KEY, SECRET, kick_delay=0.05) as api:
        yield api


@contextlib.asynccontextmanager
async def running_kicker(
    fake: FakeEmqxApi, tmp_path: Path, index: TenantIndex | None = None, concurrency: int = 2
) -> AsyncIterator[tuple[Kicker, LocalStore]]:
    store = LocalStore(tmp_path / "data", poll_interval=0.05)
    settings = EmqxApiSettings(fake.url, KEY, SECRET, timeout_seconds=0.3)
    async with HttpxEmqxApi(settings) as api:
        kicker = Kicker(
            api,
            store,
            index or TenantIndex(),
            clock=lambda: datetime.now(UTC),
            retry_initial=0.02,
            retry_max=0.1,
            concurrency=concurrency,
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
        await eventually(lambda: kicker.pending == 0)
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
        await eventually(lambda: kicker.pending == 0)
        assert kicker.jobs_dropped == 1
    assert fake.calls == []
    assert fake.namespaces == [live.instance_id]


async def test_removal_of_an_expired_record_goes_ahead(fake: FakeEmqxApi, tmp_path: Path) -> None:
    expired = make_tenant(ttl=timedelta(seconds=-1)).tenant
    fake.connect(expired.instance_id, f"{expired.instance_id}-c")
    async with running_kicker(fake, tmp_path) as (kicker, store):
        await store.create(expired)
        kicker.request(expired.instance_id, JobKind.REMOVE)
        await eventually(lambda: kicker.pending == 0)
    assert kicker.namespaces_removed == 1
    assert fake.namespaces == []


async def test_reauth_spares_sessions_made_after_the_kick(
    fake: FakeEmqxApi, tmp_path: Path
) -> None:
    t = make_tenant().tenant.instance_id
    old = fake.connect(t, f"{t}-a")
    async with running_kicker(fake, tmp_path) as (kicker, _):
        kicker.request(t, JobKind.REAUTH)
        await eventually(lambda: kicker.pending == 0)
        new = fake.connect(t, f"{t}-a")  # reconnected with the new password
        await asyncio.sleep(0.1)
    assert fake.client(f"{t}-a") == new != old
    assert fake.calls_to("POST", "/clients/kickout/bulk")[0].body == [f"{t}-a"]
    assert fake.calls_to("POST", f"/mt/ns/{t}/kick_all_clients") == []


async def test_a_stronger_request_during_an_attempt_runs_after_it(
    fake: FakeEmqxApi, tmp_path: Path
) -> None:
    t = make_tenant().tenant.instance_id
    fake.connect(t, f"{t}-a")
    fake.delay_next(1, 0.2)  # the pause's kick_all_clients is slow
    async with running_kicker(fake, tmp_path) as (kicker, _):
        kicker.request(t, JobKind.PAUSE)
        await eventually(lambda: len(fake.calls) == 1)
        kicker.request(t, JobKind.REMOVE)  # the record is deleted meanwhile
        await eventually(lambda: kicker.pending == 0)
    assert fake.calls_to("DELETE", f"/mt/ns/{t}")
    assert t not in fake.namespaces


class _UnreadableStore:
    async def get(self, instance_id: str) -> Tenant | None:
        raise InvalidRecord(f"Secret {instance_id!r}: expires_at is missing")


async def test_an_unreadable_record_counts_as_gone() -> None:
    store = _UnreadableStore()
    assert await read_record(store, "emqx-0123456789abcdef") is None  # type: ignore[arg-type]
