"""Expired records are deleted from the store; several reapers at once are harmless."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from exhook.reaper import Reaper
from tenants.errors import StoreUnavailable
from tenants.index import TenantIndex
from tenants.store import Listing, TenantStore
from tests.conftest import make_tenant


def test_expired_ids() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    base = make_tenant().tenant
    a = replace(base, instance_id="emqx-000000000000000a", expires_at=now - timedelta(hours=1))
    b = replace(base, instance_id="emqx-000000000000000b", expires_at=now)
    c = replace(base, instance_id="emqx-000000000000000c", expires_at=now + timedelta(seconds=1))
    d = replace(a, instance_id="emqx-000000000000000d", paused=True)
    index = TenantIndex()
    assert index.expired_ids(now) == []
    index.replace(Listing((c, b, d, a), "1"))
    assert index.expired_ids(now) == [a.instance_id, d.instance_id, b.instance_id]


async def indexed(store: TenantStore) -> TenantIndex:
    index = TenantIndex()
    index.replace(await store.list())
    return index


async def test_reap_once_deletes_only_expired(store: TenantStore) -> None:
    live = await store.create(make_tenant().tenant)
    gone = await store.create(make_tenant(ttl=timedelta(seconds=-1)).tenant)
    seen: list[str] = []
    reaper = Reaper(
        store,
        await indexed(store),
        clock=lambda: datetime.now(UTC),
        on_expired=seen.append,
    )
    assert await reaper.reap_once() == 1
    assert await store.get(gone.instance_id) is None
    assert await store.get(live.instance_id) == live
    assert seen == [gone.instance_id]
    assert reaper.reaped == 1


async def test_two_reapers_delete_once(store: TenantStore) -> None:
    expired = [await store.create(make_tenant(ttl=timedelta(seconds=-1)).tenant) for _ in range(3)]
    clock = lambda: datetime.now(UTC)  # noqa: E731
    first = Reaper(store, await indexed(store), clock=clock)
    second = Reaper(store, await indexed(store), clock=clock)  # its index lags: same records
    assert await first.reap_once() == 3
    assert await second.reap_once() == 0  # already gone: success, not an error
    assert first.failures == second.failures == 0
    assert all([await store.get(t.instance_id) is None for t in expired])


class _DownStore:
    async def delete(self, instance_id: str) -> bool:
        raise StoreUnavailable("down")

    async def list(self) -> Listing:
        return Listing((), "0")


async def test_store_down_is_retried_next_pass() -> None:
    index = TenantIndex()
    index.put(make_tenant(ttl=timedelta(seconds=-1)).tenant)
    seen: list[str] = []
    reaper = Reaper(
        _DownStore(),  # type: ignore[arg-type]
        index,
        clock=lambda: datetime.now(UTC),
        on_expired=seen.append,
    )
    assert await reaper.reap_once() == 0
    assert reaper.failures == 1
    assert len(seen) == 1  # the kick is asked for even though the delete failed
