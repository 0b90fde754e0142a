"""What an operator's hand edit (or a broken writer) can leave in a stored record, as
hypothesis strategies, and the bounded settings every property test here runs with."""

from __future__ import annotations

import base64
import json
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tenants.kubernetes_store import KubernetesStore
from tenants.local_store import LocalStore
from tenants.record import RFC3339_RE
from tenants.secret_format import EXPIRES_AT_ANNOTATION
from tenants.store import TenantStore

# Deterministic and bounded: the same examples every run, no example database, no
# per-example deadline (a CI machine's pauses are not failures).
BOUNDED = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# For properties that start servers per example.
BOUNDED_SLOW = settings(BOUNDED, max_examples=8)

HASH = (
    "$argon2id$v=19$m=2048,t=1,p=1$c29tZXNhbHRzb21lc2FsdA"
    "$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
)

# Times at the edges: UTC cannot hold the first two (OverflowError in astimezone).
EXTREME_TIMES = (
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "2025-02-29T00:00:00Z",
    "2025-01-01T24:00:00Z",
    "2025-01-01T23:59:60Z",
    "2025-01-01T00:00:00+24:00",
    "2025-01-01T00:00:00",
    "2025-01-01",
    "20250101T000000Z",
    "2025-01-01 00:00:00Z",
    "2025-01-01T00:00:00.1234567890Z",
    "\u0662\u0660\u0662\u0665-01-01T00:00:00Z",  # Arabic-Indic digits
)


def _offsets() -> st.SearchStrategy[timezone]:
    return st.timedeltas(
        min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59)
    ).map(lambda d: timezone(timedelta(minutes=int(d.total_seconds() // 60))))


def time_texts() -> st.SearchStrategy[str]:
    """RFC 3339-looking texts: any date and offset (also past what UTC holds), any digits in
    the right places, the known edge cases, and arbitrary text."""
    aware = st.builds(
        lambda moment, tz: moment.replace(tzinfo=tz).isoformat(),
        st.datetimes(min_value=datetime.min, max_value=datetime.max),
        _offsets(),
    )
    return st.one_of(
        st.sampled_from(EXTREME_TIMES),
        aware,
        st.from_regex(RFC3339_RE, fullmatch=True),
        st.text(max_size=40),
    )


def deep_json(depth: int) -> str:
    """JSON text nested `depth` levels: past the parser's stack when depth is large."""
    return '{"a":' * depth + "[" * depth + "]" * depth + "}" * depth


def json_values() -> st.SearchStrategy[Any]:
    """Any JSON value: scalars of every type (huge ints, floats), nested lists and maps."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=10**300, max_value=10**310),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
        st.sampled_from(["true", "false", "", HASH, "$argon2id$"]),
        time_texts(),
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=8,
    )


def json_texts() -> st.SearchStrategy[str]:
    """Text a JSON field could hold: JSON of any value, JSON nested past any stack, numbers
    too long for int(), and text that is not JSON at all."""
    return st.one_of(
        json_values().map(json.dumps),
        st.integers(min_value=1, max_value=100_000).map(deep_json),
        st.integers(min_value=4300, max_value=6000).map(lambda n: "1" * n),
        st.sampled_from(["1e999", "NaN", "[", "{}", "[]", "null"]),
        st.text(max_size=50),
    )


def base64_texts() -> st.SearchStrategy[str]:
    """Secret data values: canonical base64 of any bytes (not UTF-8 too), base64 that is
    valid but not canonical, text that is not base64."""
    return st.one_of(
        st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
        json_texts().map(lambda t: base64.b64encode(t.encode()).decode()),
        st.sampled_from(["QR==", "QQ", "QQ===", "Q Q==", "QQ==\n", "-_-_", "====", "QQ==QQ=="]),
        st.text(max_size=30),
    )


def label_values() -> st.SearchStrategy[str]:
    """What the API server accepts as a label value (63 characters, alphanumeric ends)."""
    return st.from_regex(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?", fullmatch=True)


def utc(year: int = 2025, month: int = 1, day: int = 1) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def hand_edit_row(path: Path, instance_id: str, record: object) -> None:
    """Write `record` into an embedded store's row as a writer would (a change log entry
    under the same transaction), whatever its type: sqlite keeps what it is given."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        cur = conn.execute(
            "INSERT INTO changes (type, instance_id) VALUES ('MODIFIED', ?)", (instance_id,)
        )
        conn.execute(
            "UPDATE tenants SET revision = ?, record = ? WHERE instance_id = ?",
            (cur.lastrowid, record, instance_id),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


async def make_unreadable(store: TenantStore, instance_id: str) -> None:
    """The issue's hand edit on either store: an expiry UTC cannot hold."""
    bad = "9999-12-31T23:59:59-01:00"
    if isinstance(store, LocalStore):
        conn = sqlite3.connect(store.path)
        try:
            (text,) = conn.execute(
                "SELECT record FROM tenants WHERE instance_id = ?", (instance_id,)
            ).fetchone()
        finally:
            conn.close()
        hand_edit_row(store.path, instance_id, json.dumps({**json.loads(text), "expires_at": bad}))
        return
    assert isinstance(store, KubernetesStore)
    patch = {"metadata": {"annotations": {EXPIRES_AT_ANNOTATION: bad}}}
    await store.call_api(
        "patch",
        "patch_namespaced_secret",
        instance_id,
        store.namespace,
        patch,
        name=instance_id,
        _content_type="application/merge-patch+json",
    )
