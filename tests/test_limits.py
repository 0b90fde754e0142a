"""The limits and quotas callers are told, in words."""

from __future__ import annotations

from dataclasses import fields

from manager.limits import QUOTA_WORDS, duration, limit_rows, quota_rows
from manager.settings import ManagerSettings
from tenants.quotas import Quotas


def test_every_quota_is_told() -> None:
    assert set(QUOTA_WORDS) == {item.name for item in fields(Quotas)}
    rows = quota_rows(Quotas())
    assert len(rows) == len(fields(Quotas))
    assert rows[0][:2] == ("live MQTT sessions per instance (all its credentials)", "10")


def test_quota_values_follow_the_settings() -> None:
    settings = ManagerSettings.from_environ(
        {"QUOTA_MAX_SUBSCRIPTIONS": "7", "QUOTA_MQUEUE_STORE_QOS0": "yes"}
    )
    values = {name: value for name, value, _ in quota_rows(settings.quotas)}
    assert values["subscriptions per client"] == "7"
    assert values["QoS 0 messages queued too"] == "yes"
    assert values["retained message payload"] == Quotas().retained_max_payload_size


def test_unlimited_reads_as_no_limit() -> None:
    settings = ManagerSettings.from_environ({"PER_IP_RATE": "0", "MAX_LIVE_INSTANCES": "5"})
    values = {name: value for name, value, _ in limit_rows(settings)}
    assert values["creations per address (IPv4 /32, IPv6 /64)"] == "no limit"
    assert values["live instances per network (IPv4 /24, IPv6 /48)"] == "50 at once"
    assert values["live instances in the service"] == "5 at once"
    assert values["lifetime of an instance"] == "7 days (604800 s)"


def test_durations_read_as_people_say_them() -> None:
    assert duration(604800) == "7 days"
    assert duration(86400) == "1 day"
    assert duration(7200) == "2 hours"
    assert duration(90) == "90 seconds"
    assert duration(120) == "2 minutes"
