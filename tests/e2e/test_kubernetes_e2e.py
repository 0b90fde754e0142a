"""KubernetesStore against a real cluster.

Runs only when ZERO_EMQX_E2E_KUBECONFIG names a kubeconfig; the Secrets go to
ZERO_EMQX_E2E_NAMESPACE (default "default"). The credentials need get, list, watch,
create, update and delete on secrets there. Every Secret the test creates is removed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from tenants.kubernetes_api import load_api_client
from tenants.kubernetes_store import KubernetesStore
from tenants.store import Change, ChangeType
from tests.conftest import make_tenant

KUBECONFIG = os.environ.get("ZERO_EMQX_E2E_KUBECONFIG", "")
NAMESPACE = os.environ.get("ZERO_EMQX_E2E_NAMESPACE", "default")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not KUBECONFIG, reason="ZERO_EMQX_E2E_KUBECONFIG is not set"),
]


@pytest.fixture
async def real_store() -> AsyncIterator[KubernetesStore]:
    store = KubernetesStore(load_api_client(KUBECONFIG), NAMESPACE, timeout_seconds=10.0)
    try:
        yield store
    finally:
        await store.close()


async def _deletion_of(store: KubernetesStore, revision: str, instance_id: str) -> Change:
    changes = store.watch(revision)
    try:
        async for change in changes:
            if change.instance_id == instance_id and change.type is ChangeType.DELETED:
                return change
    finally:
        await changes.aclose()
    raise AssertionError("the watch ended")


async def test_create_get_list_watch_delete(real_store: KubernetesStore) -> None:
    tenant = make_tenant(tag="e2e").tenant
    created = await real_store.create(tenant)
    try:
        assert created.revision
        assert await real_store.get(tenant.instance_id) == created
        listing = await real_store.list()
        assert created in listing.tenants

        paused = await real_store.update(replace(created, paused=True))
        assert (await real_store.get(tenant.instance_id)) == paused

        deletion = asyncio.create_task(
            _deletion_of(real_store, paused.revision, tenant.instance_id)
        )
        await asyncio.sleep(1.0)  # let the watch reach the API server
        assert await real_store.delete(tenant.instance_id) is True
        change = await asyncio.wait_for(deletion, 15.0)
        assert change.tenant is not None and change.tenant.paused
        assert await real_store.get(tenant.instance_id) is None
    finally:
        await real_store.delete(tenant.instance_id)
