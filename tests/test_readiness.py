"""`/readyz` answers from a recent check: the store and EMQX's API, each bounded."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from tenants.errors import StoreUnavailable
from tenants.local_store import LocalStore
from tests.fakes.emqx_api import running_emqx_api
from tests.manager_client import manager_for, readyz_until


def counting(
    ping: Callable[[], Awaitable[None]], calls: list[int]
) -> Callable[[], Awaitable[None]]:
    async def counted() -> None:
        calls.append(1)
        await ping()

    return counted


async def test_readyz_does_not_touch_the_store_per_request(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    calls: list[int] = []
    store.ping = counting(store.ping, calls)  # type: ignore[method-assign,assignment]
    try:
        async with manager_for(store, {"READY_INTERVAL_SECONDS": "600"}) as m:
            await readyz_until(m, 200, "ready\n")
            for _ in range(50):
                assert (await m.client.get("/readyz")).status_code == 200
            assert len(calls) == 1  # one check; the 51 probes read its result
    finally:
        await store.close()


async def test_readiness_follows_emqx_when_configured(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    async with running_emqx_api() as api:
        env = {
            "READY_INTERVAL_SECONDS": "0.1",
            "EMQX_API_URL": api.url,
            "EMQX_API_KEY": api.key,
            "EMQX_API_SECRET": api.secret,
        }
        try:
            async with manager_for(store, env) as m:
                await readyz_until(m, 200)
                assert api.calls_to("GET", "/clients")  # with the manager's key
                await api.set_down(True)
                await readyz_until(m, 503, "EMQX API unreachable\n")
                await api.set_down(False)
                await readyz_until(m, 200)
                # A slow EMQX: the probe still answers at once, "not ready".
                api.delay_next(1000, 30.0)
                await readyz_until(m, 503, "EMQX API unreachable\n")
        finally:
            await store.close()


async def test_a_wrong_emqx_key_is_not_ready(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    async with running_emqx_api() as api:
        env = {"EMQX_API_URL": api.url, "EMQX_API_KEY": api.key, "EMQX_API_SECRET": "wrong"}
        try:
            async with manager_for(store, env) as m:
                await readyz_until(m, 503, "EMQX API unreachable\n")
        finally:
            await store.close()


async def test_without_emqx_readiness_is_the_store(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    try:
        async with manager_for(store, {"READY_INTERVAL_SECONDS": "0.1"}) as m:
            await readyz_until(m, 200)

            async def down() -> None:
                raise StoreUnavailable("the API server is gone")

            store.ping = down  # type: ignore[method-assign]
            await readyz_until(m, 503, "tenant store unreachable\n")
    finally:
        await store.close()
