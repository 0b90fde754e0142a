"""Shared fixtures: a tenant store of each kind, and tenants minted the manager's way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from tenants.credentials import Rights, new_credential_id, new_instance_id, new_password
from tenants.hashing import hash_password
from tenants.local_store import LocalStore
from tenants.record import ScopedCredential, Tenant, utc_now
from tenants.store import TenantStore

STORE_KINDS = ["local", "kubernetes"]


@dataclass(frozen=True)
class Minted:
    """A stored tenant and the plaintext password only its caller knows."""

    tenant: Tenant
    password: str


def make_tenant(
    *, ttl: timedelta = timedelta(days=7), paused: bool = False, tag: str = ""
) -> Minted:
    password = new_password()
    now = utc_now()
    tenant = Tenant(
        instance_id=new_instance_id(),
        password_hash=hash_password(password),
        created_at=now,
        expires_at=now + ttl,
        tag=tag,
        paused=paused,
    )
    return Minted(tenant, password)


@dataclass(frozen=True)
class MintedCredential:
    """A scoped credential and its plaintext password."""

    credential: ScopedCredential
    password: str


def make_credential(
    *, label: str = "device", allow_publish: bool = True, allow_subscribe: bool = False
) -> MintedCredential:
    password = new_password()
    rights = Rights.of(allow_publish, allow_subscribe)
    assert rights is not None, "a scoped credential has at least one right"
    credential = ScopedCredential(
        cred_id=new_credential_id(rights),
        label=label,
        password_hash=hash_password(password),
        allow_publish=allow_publish,
        allow_subscribe=allow_subscribe,
        created_at=utc_now(),
    )
    return MintedCredential(credential, password)


@pytest.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TenantStore]:
    """The same behaviour is checked against the embedded store and the Kubernetes one."""
    if request.param == "local":
        local = LocalStore(tmp_path / "data", poll_interval=0.05)
        try:
            yield local
        finally:
            await local.close()
    else:
        from tests.fakes.kubernetes_api import running_kubernetes_api
        from tests.fakes.kubernetes_api import store_for as kube_store_for

        async with running_kubernetes_api() as api:
            kube = kube_store_for(api)
            try:
                yield kube
            finally:
                await kube.close()
