"""The tenant record and its times: RFC 3339 in, RFC 3339 out, nothing else."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenants.record import (
    STATES,
    TAG_MAX,
    ScopedCredential,
    Tenant,
    format_time,
    in_order,
    is_valid_tag,
    parse_time,
    utc_now,
)
from tests import hostile_values
from tests.hostile_values import HASH

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def credential(cred_id: str, created: datetime) -> ScopedCredential:
    return ScopedCredential(cred_id, "dash", HASH, True, False, created)


TENANT = Tenant("emqx-3a7f9c2b1d4e5678", HASH, T0, T0 + timedelta(days=7))


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2025-01-01T00:00:00Z", T0),
        ("2025-01-01T01:30:00+01:30", T0),
        ("2024-12-31T23:00:00-01:00", T0),
        ("2025-01-01T00:00:00.5Z", T0.replace(microsecond=500_000)),
        ("2025-01-01T00:00:00.123456789Z", T0.replace(microsecond=123_456)),
        ("9999-12-31T23:59:59Z", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("9999-12-31T23:59:59+01:00", datetime(9999, 12, 31, 22, 59, 59, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, moment: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == moment
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text", [*hostile_values.EXTREME_TIMES[:2], *hostile_values.EXTREME_TIMES[4:]]
)
def test_parse_time_refuses_with_a_value_error_that_does_not_repeat_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="RFC 3339") as caught:
        parse_time(text)
    assert text not in str(caught.value)


@pytest.mark.parametrize(
    "value", [None, 20250101, b"2025-01-01T00:00:00Z", ["2025-01-01T00:00:00Z"]]
)
def test_parse_time_refuses_what_is_not_text(value: object) -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_time(value)


def test_format_time() -> None:
    assert format_time(T0) == "2025-01-01T00:00:00Z"
    assert format_time(T0.replace(microsecond=999_999)) == "2025-01-01T00:00:00Z"
    assert format_time(datetime(2025, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))) == (
        "2025-01-01T00:00:00Z"
    )
    assert format_time(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00Z"
    assert format_time(datetime(999, 2, 3, 4, 5, 6, tzinfo=UTC)) == "0999-02-03T04:05:06Z"


@hostile_values.BOUNDED
@given(moment=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
def test_every_time_round_trips_in_whole_seconds(moment: datetime) -> None:
    aware = moment.replace(tzinfo=UTC)
    assert parse_time(format_time(aware)) == aware.replace(microsecond=0)


@hostile_values.BOUNDED
@given(text=hostile_values.time_texts())
def test_any_text_is_a_utc_time_or_a_value_error(text: str) -> None:
    try:
        moment = parse_time(text)
    except ValueError:
        return
    assert moment.tzinfo is UTC
    assert parse_time(format_time(moment)) == moment.replace(microsecond=0)


def test_utc_now_is_whole_seconds_in_utc() -> None:
    now = utc_now()
    assert now.tzinfo is UTC and now.microsecond == 0


@pytest.mark.parametrize("tag", ["", "a", "A-b_c.9", "x" * TAG_MAX])
def test_valid_tags(tag: str) -> None:
    assert is_valid_tag(tag)


@pytest.mark.parametrize("tag", ["x" * (TAG_MAX + 1), "-a", "a-", ".a", "a_", "a b", "ä", "a\n"])
def test_invalid_tags(tag: str) -> None:
    assert not is_valid_tag(tag)


def test_expiry_is_at_the_instant() -> None:
    end = TENANT.expires_at
    assert not TENANT.is_expired(end - timedelta(seconds=1))
    assert TENANT.is_expired(end)
    assert TENANT.is_live(end - timedelta(seconds=1))
    assert not TENANT.is_live(end)


def test_states() -> None:
    assert STATES == ("active", "paused", "expired")
    end = TENANT.expires_at
    assert TENANT.state == "active"
    assert replace(TENANT, paused=True).state == "paused"
    assert TENANT.state_at(end - timedelta(seconds=1)) == "active"
    assert replace(TENANT, paused=True).state_at(end - timedelta(seconds=1)) == "paused"
    assert replace(TENANT, paused=True).state_at(end) == "expired"


def test_credentials_and_usernames() -> None:
    a, b = credential("0000000a", T0), credential("0000000b", T0)
    tenant = replace(TENANT, credentials=(a, b))
    assert tenant.credential("0000000b") is b
    assert tenant.credential("0000000c") is None
    assert tenant.usernames() == (
        "emqx-3a7f9c2b1d4e5678",
        tenant.username_of(a),
        tenant.username_of(b),
    )
    assert tenant.username_of(a) == "emqx-3a7f9c2b1d4e5678.0000000a"
    assert tenant.with_revision("9") == replace(tenant, revision="9")


def test_in_order_is_by_creation_then_id() -> None:
    late = credential("00000001", T0 + timedelta(seconds=1))
    early_b = credential("0000000b", T0)
    early_a = credential("0000000a", T0)
    assert in_order([late, early_b, early_a]) == (early_a, early_b, late)


def test_reprs_hide_the_hashes_and_the_ip_hash() -> None:
    tenant = replace(TENANT, ip_hash="ip-secret", credentials=(credential("0000000a", T0),))
    assert HASH not in repr(tenant) and "ip-secret" not in repr(tenant)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2025-01-01", "not an RFC 3339 time with an offset"),
        ("2025-02-30T00:00:00Z", "not a valid RFC 3339 time (a field out of range)"),
        ("9999-12-31T23:59:59-01:00", "an RFC 3339 time outside the years 1 to 9999 in UTC"),
    ],
)
def test_parse_time_messages_are_exact(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="RFC 3339") as caught:
        parse_time(text)
    assert str(caught.value) == message


def test_format_time_is_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert format_time(T0) == "2025-01-01T00:00:00Z"
        assert parse_time(format_time(T0)) == T0
    finally:
        monkeypatch.undo()
        time.tzset()
