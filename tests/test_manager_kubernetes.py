"""How the manager answers when the Kubernetes API misbehaves: 502, 504, 500, 503."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from tests.fakes.kubernetes_api import FakeKubernetesApi, running_kubernetes_api, store_for
from tests.manager_client import manager_for, readyz_until


@pytest.fixture
async def api() -> AsyncIterator[FakeKubernetesApi]:
    async with running_kubernetes_api() as fake:
        yield fake


async def test_backend_5xx_is_502_and_nothing_is_left_behind(api: FakeKubernetesApi) -> None:
    store = store_for(api)
    try:
        async with manager_for(store) as m:
            api.fail_next(1, 503, verb="create")
            response = await m.client.post("/v1/instances")
            assert response.status_code == 502
            assert response.text == "the tenant store is unavailable\n"
            assert (await store.list()).tenants == ()
            assert (await m.client.post("/v1/instances")).status_code == 201
    finally:
        await store.close()


async def test_backend_timeout_is_504(api: FakeKubernetesApi) -> None:
    store = store_for(api, timeout_seconds=0.5)
    try:
        async with manager_for(store) as m:
            api.delay_next(1, 2.0, verb="create")
            response = await m.client.post("/v1/instances")
            assert response.status_code == 504
    finally:
        await store.close()


async def test_request_deadline_is_504(api: FakeKubernetesApi) -> None:
    store = store_for(api, timeout_seconds=5.0)
    try:
        async with manager_for(store, {"REQUEST_DEADLINE_SECONDS": "0.3"}) as m:
            api.delay_next(1, 1.0, verb="create")
            response = await m.client.post("/v1/instances")
            assert response.status_code == 504
            assert response.text == "the request deadline passed\n"
    finally:
        await store.close()


async def test_missing_rbac_is_500_with_the_verb_in_the_log(
    api: FakeKubernetesApi, caplog: pytest.LogCaptureFixture
) -> None:
    store = store_for(api)
    try:
        async with manager_for(store) as m:
            api.forbid("create")
            with caplog.at_level(logging.ERROR):
                response = await m.client.post("/v1/instances")
            assert response.status_code == 500
            assert response.text == "internal error\n"
            assert "'create'" in caplog.text
            assert "403" in caplog.text
            assert "create" not in response.text
    finally:
        await store.close()


async def test_readyz_follows_the_store(api: FakeKubernetesApi) -> None:
    store = store_for(api, timeout_seconds=1.0)
    try:
        async with manager_for(store, {"READY_INTERVAL_SECONDS": "0.1"}) as m:
            await readyz_until(m, 200, "ready")
            await api.set_down(True)
            await readyz_until(m, 503, "tenant store unreachable")
            assert (await m.client.get("/healthz")).status_code == 200
            await api.set_down(False)
            await readyz_until(m, 200, "ready")
    finally:
        await store.close()


async def test_created_secret_follows_the_record_format(api: FakeKubernetesApi) -> None:
    store = store_for(api)
    try:
        async with manager_for(store) as m:
            response = await m.client.post("/v1/instances", json={"tag": "demo"})
            body = response.json()
            secret = api.secret(body["instance_id"])
            assert secret is not None
            labels = secret["metadata"]["labels"]
            assert labels["zero-emqx.io/tenant"] == "true"
            assert labels["zero-emqx.io/tag"] == "demo"
            assert len(labels["zero-emqx.io/ip-hash"]) == 32
            notes = secret["metadata"]["annotations"]
            assert notes["zero-emqx.io/expires-at"] == body["expires_at"]
            assert "password-hash" in secret["data"]
            assert body["credentials"]["password"] not in str(secret)
    finally:
        await store.close()
