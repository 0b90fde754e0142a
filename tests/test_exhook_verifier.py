"""argon2 off the event loop: bounded workers, shedding, the verified-credential cache."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from exhook.verifier import CredentialCache, Overloaded, Verifier
from tenants.hashing import hash_password
from tenants.index import TenantIndex
from tenants.record import Tenant
from tests.conftest import make_credential, make_tenant


class SlowVerify:
    """An injectable verify: counts calls and concurrency, optionally sleeps, matches on 'ok'."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.calls = 0
        self.running = 0
        self.peak = 0
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, password_hash: str, password: str) -> bool:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.threads.add(threading.current_thread().name)
        try:
            time.sleep(self.seconds)
            return password == "ok"
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture
def verifier_factory() -> Iterator[list[Verifier]]:
    made: list[Verifier] = []
    yield made
    for verifier in made:
        verifier.close()


def make(made: list[Verifier], fn: SlowVerify, workers: int = 1, cache: int = 10) -> Verifier:
    verifier = Verifier(workers=workers, cache_size=cache, verify_fn=fn)
    made.append(verifier)
    return verifier


async def test_real_argon2_runs_in_a_worker_thread(verifier_factory: list[Verifier]) -> None:
    verifier = Verifier(workers=1, cache_size=10)
    verifier_factory.append(verifier)
    password_hash = hash_password("right")
    assert await verifier.verify(password_hash, "right", budget=1.0)
    assert not await verifier.verify(password_hash, "wrong", budget=1.0)
    assert verifier.stats.verifications == 2


async def test_verifies_never_run_on_the_loop_and_are_bounded(
    verifier_factory: list[Verifier],
) -> None:
    fn = SlowVerify(0.05)
    verifier = make(verifier_factory, fn, workers=2)
    results = await asyncio.gather(*(verifier.verify("h", "ok", budget=5) for _ in range(6)))
    assert results == [True] * 6
    assert fn.peak == 2
    assert all(name.startswith("argon2") for name in fn.threads)
    assert threading.current_thread().name not in fn.threads


async def test_calls_past_the_budget_are_shed_fast(verifier_factory: list[Verifier]) -> None:
    fn = SlowVerify(0.4)
    verifier = make(verifier_factory, fn, workers=1)
    first = asyncio.create_task(verifier.verify("h", "ok", budget=1))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(Overloaded):
        await verifier.verify("h", "ok", budget=0.05)
    assert time.monotonic() - started < 0.3
    with pytest.raises(Overloaded):  # no time left at all: shed at once
        await verifier.verify("h", "ok", budget=-1)
    assert verifier.stats.overloaded == 2
    assert await first
    # The shed calls did not leak a slot: the next one runs at once.
    assert verifier.busy == 0
    assert await verifier.verify("h", "ok", budget=0)
    assert fn.calls == 2


async def test_a_cancelled_caller_frees_its_slot_when_the_thread_ends(
    verifier_factory: list[Verifier],
) -> None:
    fn = SlowVerify(0.2)
    verifier = make(verifier_factory, fn, workers=1)
    call = asyncio.create_task(verifier.verify("h", "ok", budget=1))
    await asyncio.sleep(0.05)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert verifier.busy == 1  # the thread still runs: the bound holds
    assert await verifier.verify("h", "ok", budget=1)
    assert fn.peak == 1


def tenant_with(revision: str) -> Tenant:
    return replace(make_tenant().tenant, revision=revision)


def test_cache_hits_only_the_same_password_and_record() -> None:
    cache = CredentialCache(10)
    tenant = tenant_with("1")
    cache.remember(tenant, "secret-password")
    assert cache.hit(tenant, "secret-password")
    assert not cache.hit(tenant, "other-password")
    assert cache.hit(tenant, "secret-password")  # a wrong guess does not evict
    assert not cache.hit(replace(tenant, revision="2"), "secret-password")
    assert not cache.hit(tenant, "secret-password")  # the stale entry is gone


def test_cache_misses_when_the_hash_changes_under_the_same_revision() -> None:
    cache = CredentialCache(10)
    tenant = tenant_with("1")
    cache.remember(tenant, "pw")
    assert not cache.hit(replace(tenant, password_hash="$argon2id$else"), "pw")


def test_cache_keeps_no_plaintext() -> None:
    cache = CredentialCache(10)
    tenant = tenant_with("1")
    cache.remember(tenant, "the-plaintext-password")
    entry = cache._entries[tenant.instance_id]
    assert b"the-plaintext-password" not in entry.digest
    assert "the-plaintext-password" not in repr(entry)
    # The digest key is per process (per cache): another cache computes another digest.
    assert CredentialCache(10)._digest("x") != cache._digest("x")


def test_cache_is_a_bounded_lru() -> None:
    cache = CredentialCache(2)
    a, b, c = tenant_with("1"), tenant_with("1"), tenant_with("1")
    cache.remember(a, "pa")
    cache.remember(b, "pb")
    assert cache.hit(a, "pa")  # a is now the most recent
    cache.remember(c, "pc")
    assert len(cache) == 2
    assert not cache.hit(b, "pb")
    assert cache.hit(a, "pa") and cache.hit(c, "pc")
    disabled = CredentialCache(0)
    disabled.remember(a, "pa")
    assert not disabled.hit(a, "pa")


def test_cache_follows_the_index() -> None:
    index = TenantIndex()
    cache = CredentialCache(10)
    index.add_listener(cache.on_index_change)
    tenant = tenant_with("1")
    index.put(tenant)
    cache.remember(tenant, "pw")
    index.put(replace(tenant, paused=True, revision="2"))
    assert len(cache) == 0
    cache.remember(tenant, "pw")
    index.put(replace(tenant, revision="3"))
    assert len(cache) == 0


def test_owner_and_scoped_credentials_are_cached_apart() -> None:
    cache = CredentialCache(10)
    device = make_credential().credential
    tenant = replace(tenant_with("1"), credentials=(device,))
    owner, scoped = tenant.usernames()
    cache.remember(tenant, "owner-pw")
    cache.remember(tenant, "device-pw", username=scoped, password_hash=device.password_hash)
    assert len(cache) == 2
    assert cache.hit(tenant, "owner-pw") and not cache.hit(tenant, "device-pw")
    hit = cache.hit(tenant, "device-pw", username=scoped, password_hash=device.password_hash)
    assert hit
    assert not cache.hit(tenant, "owner-pw", username=scoped, password_hash=device.password_hash)
    # The credential's hash replaced under the same revision: no hit.
    assert not cache.hit(tenant, "device-pw", username=scoped, password_hash="$argon2id$else")
    # Any record change drops every username of the tenant.
    cache.remember(tenant, "device-pw", username=scoped, password_hash=device.password_hash)
    index = TenantIndex()
    index.add_listener(cache.on_index_change)
    index.put(tenant)
    assert len(cache) == 0
    assert owner == tenant.instance_id


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="workers"):
        Verifier(workers=0, cache_size=1)
