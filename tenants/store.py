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
class Unreadable:
    """A stored record that cannot be read, so counts as gone: its name as stored (not
    necessarily an instance id) and why, naming the field, never the data."""

    instance_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Change:
    """One watch event. `tenant` is None when the record was deleted or became unreadable
    (both mean gone); then `unreadable` says why it cannot be read ('' for a deletion)."""

    type: ChangeType
    instance_id: str
    tenant: Tenant | None
    revision: str
    unreadable: str = ""


@dataclass(frozen=True, slots=True)
class Listing:
    """A consistent snapshot: every readable record, the names of those that cannot be
    read, and the revision to watch from."""

    tenants: tuple[Tenant, ...]
    revision: str
    unreadable: tuple[Unreadable, ...] = ()


class TenantStore(Protocol):
    async def create(self, tenant: Tenant) -> Tenant:
        """Store a new record; raises AlreadyExists when the id is taken."""

    async def get(self, instance_id: str) -> Tenant | None:
        """The record, or None when there is none or it cannot be read."""

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
