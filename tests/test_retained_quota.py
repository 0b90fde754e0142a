"""Retained messages per instance: the newest beyond the quota are removed, by Zero EMQX
(EMQX's retainer is one table with one global cap)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from exhook.emqx_api import HttpxEmqxApi
from exhook.retained_quota import RetainedQuota, over_quota
from tenants.record import Tenant
from tenants.settings import EmqxApiSettings
from tests.conftest import make_tenant
from tests.fakes.emqx_api import FakeEmqxApi, running_emqx_api
from tests.waiting import until

NOW = datetime(2030, 1, 1, tzinfo=UTC)
A, B, GONE = "emqx-000000000000000a", "emqx-000000000000000b", "emqx-000000000000000c"
EXPIRED = "emqx-000000000000000e"


def tenants() -> dict[str, Tenant]:
    base = replace(make_tenant().tenant, expires_at=NOW + timedelta(days=1))
    return {
        A: replace(base, instance_id=A),
        B: replace(base, instance_id=B, paused=True),  # paused: still held to the quota
        EXPIRED: replace(base, instance_id=EXPIRED, expires_at=NOW),
    }


def test_over_quota_keeps_the_oldest() -> None:
    topics = [f"{A}/t/{n}" for n in range(5)] + [f"{B}/x", f"{B}/y", f"{B}/z"]
    topics += [f"{GONE}/1", f"{GONE}/2", f"{GONE}/3", f"{EXPIRED}/1", f"{EXPIRED}/2"]
    topics += ["global/1", "global/2", "global/3", f"{A}x/1"]
    extra = over_quota(topics, tenants(), NOW, quota=2)
    assert extra == {A: [f"{A}/t/2", f"{A}/t/3", f"{A}/t/4"], B: [f"{B}/z"]}
    assert over_quota(topics, tenants(), NOW, quota=5) == {}


def test_a_topic_with_a_wildcard_is_never_deleted_one_by_one() -> None:
    """A DELETE of a filter removes every match: only plain topic names are removed."""
    topics = [f"{A}/1", f"{A}/2", f"{A}/+", f"{A}/#"]
    assert over_quota(topics, tenants(), NOW, quota=1) == {A: [f"{A}/2"]}


@pytest.fixture
async def fake() -> AsyncIterator[FakeEmqxApi]:
    async with running_emqx_api() as api:
        yield api


@pytest.fixture
async def api(fake: FakeEmqxApi) -> AsyncIterator[HttpxEmqxApi]:
    async with HttpxEmqxApi(EmqxApiSettings(fake.url, fake.key, fake.secret, 0.5)) as client:
        yield client


async def test_a_pass_removes_the_newest_over_the_quota(
    fake: FakeEmqxApi, api: HttpxEmqxApi
) -> None:
    now = datetime.now(UTC)
    live = {
        A: replace(make_tenant().tenant, instance_id=A),
        B: replace(make_tenant().tenant, instance_id=B),
    }
    for n in range(5):
        fake.retainer.retain(f"{A}/state/{n}")
    fake.retainer.retain(f"{B}/state")
    fake.retainer.retain(f"{GONE}/state")  # no record: the reconciler purges it, not this
    fake.retainer.retain(f"{A}/state/1")  # rewritten: now the newest
    quota = RetainedQuota(api, lambda: live.values(), quota=3, clock=lambda: now)
    assert await quota.enforce_once() == {A: 2}
    assert fake.retainer.topics(f"{A}/#") == [f"{A}/state/0", f"{A}/state/2", f"{A}/state/3"]
    assert fake.retainer.topics(f"{B}/#") == [f"{B}/state"]
    assert fake.retainer.topics(f"{GONE}/#") == [f"{GONE}/state"]
    deletes = [c.raw_path for c in fake.calls if c.method == "DELETE"]
    assert sorted(deletes) == [
        f"/mqtt/retainer/message/{A}%2Fstate%2F1",
        f"/mqtt/retainer/message/{A}%2Fstate%2F4",
    ]
    assert quota.removed == 2 and quota.passes == 1
    assert await quota.enforce_once() == {}  # within the quota now


async def test_the_loop_retries_while_emqx_fails(fake: FakeEmqxApi, api: HttpxEmqxApi) -> None:
    now = datetime.now(UTC)
    live = {A: replace(make_tenant().tenant, instance_id=A)}
    for n in range(3):
        fake.retainer.retain(f"{A}/{n}")
    fake.fail_next(2, 503, path="/mqtt/retainer/")
    quota = RetainedQuota(
        api, lambda: live.values(), quota=1, clock=lambda: now, interval=60, retry_initial=0.01
    )
    task = asyncio.create_task(quota.run())
    try:
        await until(lambda: quota.passes == 1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert fake.retainer.topics() == [f"{A}/0"]
