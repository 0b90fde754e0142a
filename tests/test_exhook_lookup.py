"""A credential minted a moment ago works before the watch has brought it to the index."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from tenants.operations import add_credential, modify
from tenants.record import Tenant, utc_now
from tenants.store import Change, Listing, TenantStore
from tests.conftest import make_credential, make_tenant
from tests.emqx_harness import ALLOW, DENY, running_exhook


class DeafStore:
    """A store whose watch never reports anything: the index keeps its first listing."""

    def __init__(self, inner: TenantStore) -> None:
        self.inner = inner
        self.gets = 0

    async def list(self) -> Listing:
        return await self.inner.list()

    async def watch(self, revision: str) -> AsyncIterator[Change]:
        await asyncio.Event().wait()
        yield  # type: ignore[misc]  # pragma: no cover - never reached

    async def get(self, instance_id: str) -> Tenant | None:
        self.gets += 1
        return await self.inner.get(instance_id)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_a_record_the_index_has_not_seen_is_read_from_the_store(store: TenantStore) -> None:
    deaf = DeafStore(store)
    async with running_exhook(deaf) as (runtime, emqx):  # type: ignore[arg-type]
        fresh = make_tenant()
        await store.create(fresh.tenant)
        instance_id = fresh.tenant.instance_id
        assert runtime.index.get(instance_id) is None

        assert (await emqx.connect(instance_id, fresh.password)).verdict == ALLOW
        wrong = fresh.password[:-1] + ("A" if fresh.password[-1] != "A" else "B")
        assert (await emqx.connect(instance_id, wrong)).verdict == DENY
        assert deaf.gets == 2

        await store.delete(instance_id)
        assert (await emqx.connect(instance_id, fresh.password)).verdict == DENY


async def test_store_reads_for_unknown_ids_are_rate_limited(store: TenantStore) -> None:
    deaf = DeafStore(store)
    async with running_exhook(deaf, lookup_rate=2.0) as (runtime, emqx):  # type: ignore[arg-type]
        strangers = [make_tenant() for _ in range(10)]
        answers = [await emqx.connect(m.tenant.instance_id, m.password) for m in strangers]
        assert {a.verdict for a in answers} == {DENY}
        assert all(a.explicit for a in answers)
        assert deaf.gets <= 3  # the bucket holds 2, and refills at 2/s
        # Every unknown id still paid one argon2 verify: no shortcut reveals who exists.
        assert runtime.verifier.stats.verifications == 10


async def test_a_credential_the_index_has_not_seen_is_read_from_the_store(
    store: TenantStore,
) -> None:
    deaf = DeafStore(store)
    minted = make_tenant()
    await store.create(minted.tenant)
    async with running_exhook(deaf) as (runtime, emqx):  # type: ignore[arg-type]
        device = make_credential()
        instance_id = minted.tenant.instance_id
        await modify(store, instance_id, add_credential(device.credential, utc_now(), 20))
        indexed = runtime.index.get(instance_id)
        assert indexed is not None and indexed.credentials == ()
        username = f"{instance_id}.{device.credential.cred_id}"
        assert (await emqx.connect(username, device.password)).verdict == ALLOW
        unknown = f"{instance_id}.p0000000"
        if unknown == username:
            unknown = f"{instance_id}.p1111111"
        assert (await emqx.connect(unknown, device.password)).verdict == DENY
        assert (await emqx.connect(instance_id, minted.password)).verdict == ALLOW
        assert runtime.verifier.stats.verifications == 4  # decoy + real, decoy, owner


async def test_the_index_catching_up_during_the_read_still_admits(store: TenantStore) -> None:
    """The watch brings the record while the store is read (the race a real index has):
    the index, now right, decides; the credential is not refused for the decoy's sake."""
    deaf = DeafStore(store)
    minted = make_tenant()
    await store.create(minted.tenant)
    async with running_exhook(deaf) as (runtime, emqx):  # type: ignore[arg-type]
        device = make_credential()
        instance_id = minted.tenant.instance_id
        stored = await modify(store, instance_id, add_credential(device.credential, utc_now(), 20))
        inner_get = deaf.get

        async def get_while_the_watch_arrives(wanted: str) -> Tenant | None:
            runtime.index.put(stored)  # the watch event lands during the read
            return await inner_get(wanted)

        deaf.get = get_while_the_watch_arrives  # type: ignore[method-assign,assignment]
        indexed = runtime.index.get(instance_id)
        assert indexed is not None and indexed.credentials == ()
        name = stored.username_of(device.credential)
        assert (await emqx.connect(name, device.password)).verdict == ALLOW
        deaf.get = inner_get  # type: ignore[method-assign]
        assert (await emqx.connect(name, minted.password)).verdict == DENY  # still checked
