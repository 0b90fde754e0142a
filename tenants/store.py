"""The tenant store interface. Two implementations: `LocalStore` (sqlite, the embedded
default) and `KubernetesStore` (one Secret per instance)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from tenants.record import Tenant


class ChangeType(StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class Change:
    """One watch event. `tenant` is None when the record became unreadable (treat as gone)."""

    type: ChangeType
    instance_id: str
    tenant: Tenant | None
    revision: str


@dataclass(frozen=True, slots=True)
class Listing:
    """A consistent snapshot of every readable record and the revision to watch from."""

    tenants: tuple[Tenant, ...]
    revision: str


class TenantStore(Protocol):
    async def create(self, tenant: Tenant) -> Tenant:
        """Store a new record; raises AlreadyExists when the id is taken."""

    async def get(self, instance_id: str) -> Tenant | None: ...

    async def list(self) -> Listing: ...

    async def update(self, tenant: Tenant) -> Tenant:
        """Replace a record; `tenant.revision` must be current (else Conflict), NotFound if gone."""

    async def delete(self, instance_id: str) -> bool:
        """Remove a record; False when it was already gone."""

    def watch(self, revision: str) -> AsyncIterator[Change]:
        """Changes after `revision`, forever; raises WatchExpired when it is too old."""

    async def ping(self) -> None:
        """Raise a StoreError when the backend is unreachable."""

    async def close(self) -> None: ...
