"""The index's view of records the store cannot read: gone to every listener, named and
logged once, counted, forgotten when deleted or readable again."""

from __future__ import annotations

import logging

import pytest

from tenants.index import TenantIndex
from tenants.record import Tenant
from tenants.store import Change, ChangeType, Listing, Unreadable
from tests.conftest import make_tenant

ID = "emqx-00000000000000aa"


def _index() -> tuple[TenantIndex, list[tuple[Tenant | None, Tenant | None]]]:
    index = TenantIndex()
    heard: list[tuple[Tenant | None, Tenant | None]] = []
    index.add_listener(lambda before, after: heard.append((before, after)))
    return index, heard


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_record_turning_unreadable_is_a_deletion_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tenant = make_tenant().tenant
    index, heard = _index()
    index.replace(Listing((tenant,), "1"))
    why = f"Secret {tenant.instance_id!r}: annotation zero-emqx.io/expires-at is not RFC 3339"
    for revision in ("2", "3"):  # the same problem twice: one warning
        index.apply(Change(ChangeType.MODIFIED, tenant.instance_id, None, revision, why))
    assert index.get(tenant.instance_id) is None
    assert heard == [(None, tenant), (tenant, None)]
    assert index.unreadable() == {tenant.instance_id: why}
    assert index.unreadable_found == 1
    assert _warnings(caplog) == [f"tenant record unreadable, treated as deleted: {why}"]
    assert index.count_live(tenant.created_at) == 0

    index.replace(Listing((), "4", (Unreadable(tenant.instance_id, why),)))  # a relist
    assert index.unreadable_found == 1 and len(_warnings(caplog)) == 1

    other = "Secret ...: label zero-emqx.io/tag is not a valid tag"
    index.apply(Change(ChangeType.MODIFIED, tenant.instance_id, None, "5", other))
    assert index.unreadable() == {tenant.instance_id: other}
    assert index.unreadable_found == 2

    index.apply(Change(ChangeType.MODIFIED, tenant.instance_id, tenant, "6"))  # fixed
    assert index.get(tenant.instance_id) == tenant and index.unreadable() == {}


def test_a_deletion_forgets_an_unreadable_record() -> None:
    index, _ = _index()
    index.replace(Listing((), "1", (Unreadable(ID, "bad"),)))
    assert index.unreadable() == {ID: "bad"} and index.unreadable_found == 1
    index.apply(Change(ChangeType.DELETED, ID, None, "2"))
    assert index.unreadable() == {}


def test_a_relist_without_it_forgets_it() -> None:
    index, heard = _index()
    index.replace(Listing((), "1", (Unreadable(ID, "bad"),)))
    index.replace(Listing((), "2"))
    assert index.unreadable() == {} and heard == []


def test_a_listed_unreadable_record_leaves_the_index() -> None:
    tenant = make_tenant().tenant
    index, heard = _index()
    index.replace(Listing((tenant,), "1"))
    index.replace(Listing((), "2", (Unreadable(tenant.instance_id, "bad"),)))
    assert index.get(tenant.instance_id) is None
    assert heard[-1] == (tenant, None)
    assert index.unreadable() == {tenant.instance_id: "bad"}


def test_the_unreadable_map_is_a_copy() -> None:
    index, _ = _index()
    index.replace(Listing((), "1", (Unreadable(ID, "bad"),)))
    index.unreadable().clear()
    assert index.unreadable() == {ID: "bad"}
