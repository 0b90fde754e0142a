"""TenantIndex.count_live and expired_ids keep a sorted list of expiries instead of
scanning: they must give exactly what a scan gives, through replace / apply / put, for
any `now`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from tenants.index import TenantIndex
from tenants.record import Tenant
from tenants.store import Change, ChangeType, Listing

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def expired_ids(tenants: list[Tenant], now: datetime) -> list[str]:
    """The oracle: a full scan, soonest-expired first (ties by id)."""
    expired = [t for t in tenants if t.is_expired(now)]
    expired.sort(key=lambda t: (t.expires_at, t.instance_id))
    return [t.instance_id for t in expired]


def tenant(n: int, expires_in: int, ip: str = "") -> Tenant:
    return Tenant(
        instance_id=f"emqx-{n:016x}",
        password_hash="$argon2id$x",
        created_at=T0,
        expires_at=T0 + timedelta(seconds=expires_in),
        ip_hash=ip,
    )


def scan(index: TenantIndex, now: datetime, ip: str | None = None) -> int:
    return sum(1 for t in index.tenants() if t.is_live(now) and (ip is None or t.ip_hash == ip))


ops = st.lists(
    st.tuples(
        st.sampled_from(["put", "delete", "modify", "relist"]),
        st.integers(0, 15),
        st.integers(-5, 20),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(ops=ops, probes=st.lists(st.integers(-10, 30), min_size=1, max_size=5))
def test_count_live_matches_a_scan(ops: list[tuple[str, int, int]], probes: list[int]) -> None:
    index = TenantIndex()
    for kind, n, expires_in in ops:
        if kind == "put":
            index.put(tenant(n, expires_in, ip=f"ip{n % 3}"))
        elif kind == "delete":
            index.apply(Change(ChangeType.DELETED, f"emqx-{n:016x}", None, "1"))
        elif kind == "modify":
            current = index.get(f"emqx-{n:016x}")
            if current is not None:
                moved = replace(current, expires_at=T0 + timedelta(seconds=expires_in))
                index.apply(Change(ChangeType.MODIFIED, current.instance_id, moved, "2"))
        else:
            kept = [t for t in index.tenants() if int(t.instance_id[5:], 16) % 2 == 0]
            index.replace(Listing((*kept, tenant(100 + n, expires_in)), "3"))
        for offset in probes:
            now = T0 + timedelta(seconds=offset)
            assert index.count_live(now) == scan(index, now)
            assert index.count_live(now, "ip1") == scan(index, now, "ip1")
            assert index.expired_ids(now) == expired_ids(index.tenants(), now)


def test_count_live_at_the_expiry_instant() -> None:
    index = TenantIndex()
    index.replace(Listing((tenant(1, 10), tenant(2, 10), tenant(3, 20)), "1"))
    assert index.count_live(T0 + timedelta(seconds=9)) == 3
    assert index.count_live(T0 + timedelta(seconds=10)) == 1  # expired at expires_at
    assert index.count_live(T0 + timedelta(seconds=20)) == 0
