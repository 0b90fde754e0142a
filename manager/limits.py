"""What a caller may do, in words: the service's limits and an instance's quotas.

SKILL.md and the console show the same rows. Every quota of tenants/quotas.py has a row
here (a test checks it), so a new quota cannot be left out of what callers are told.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Final

from manager.settings import ManagerSettings
from tenants.quotas import Quotas

Row = tuple[str, str, str]  # what, value, what happens past it

# field -> (what, what happens past it), as tenants/quotas.py and README's table say
QUOTA_WORDS: Final[dict[str, tuple[str, str]]] = {
    "max_sessions": (
        "live MQTT sessions per instance (all its credentials)",
        "CONNECT refused: CONNACK 0x97 (MQTT 5) / 3 (3.1.1)",
    ),
    "messages_rate": (
        "inbound messages per connection",
        "QoS 1/2: PUBACK/PUBREC 0x97; QoS 0: dropped",
    ),
    "messages_burst": ("inbound message burst per connection", "as above"),
    "bytes_rate": ("inbound bytes per connection", "as above"),
    "bytes_burst": ("inbound byte burst per connection", "as above"),
    "delivery_messages_rate": (
        "outbound messages per connection (EMQX 6.1.2+)",
        "QoS 0: dropped; QoS 1/2: queued",
    ),
    "delivery_messages_burst": ("outbound message burst per connection (6.1.2+)", "as above"),
    "delivery_bytes_rate": ("outbound bytes per connection (6.1.2+)", "as above"),
    "delivery_bytes_burst": ("outbound byte burst per connection (6.1.2+)", "as above"),
    "max_packet_size": ("MQTT packet size, both ways", "DISCONNECT 0x95"),
    "max_subscriptions": ("subscriptions per client", "SUBACK 0x97"),
    "max_mqueue_len": ("messages queued for one session (QoS 1/2)", "the oldest is dropped"),
    "mqueue_store_qos0": ("QoS 0 messages queued too", "-"),
    "max_topic_levels": ("topic levels", "the PUBLISH or SUBSCRIBE is refused"),
    "retained_messages": (
        "retained messages per instance",
        "the newest beyond it are removed",
    ),
    "retained_global_max": (
        "retained messages in the whole service",
        "no new retained topic until there is room",
    ),
    "retained_max_payload_size": ("retained message payload", "not retained"),
    "retained_expiry": ("longest life of a retained message", "removed"),
    "retained_clear_interval": ("how often expired retained messages are removed", "-"),
}


def duration(seconds: float) -> str:
    """`604800` -> `7 days`; the largest unit that divides it, else seconds."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} seconds"


def _limit(value: int, what: str) -> str:
    return f"{value} {what}" if value else "no limit"


def limit_rows(settings: ManagerSettings) -> tuple[Row, ...]:
    """The service's own limits on creating and managing instances."""
    s, p = settings, settings.prefixes
    caller = f"address (IPv4 /{p.ipv4_group}, IPv6 /{p.ipv6_group})"
    network = f"network (IPv4 /{p.ipv4_network}, IPv6 /{p.ipv6_network})"
    later = "429, Retry-After"
    return (
        ("lifetime of an instance", f"{duration(s.ttl_seconds)} ({s.ttl_seconds} s)", "gone"),
        (f"creations per {caller}", _limit(s.per_ip_rate, "per minute"), later),
        (f"live instances per {caller}", _limit(s.per_ip_max_live, "at once"), later),
        (f"live instances per {network}", _limit(s.per_network_max_live, "at once"), later),
        ("live instances in the service", _limit(s.max_live_instances, "at once"), later),
        ("request body", f"{s.max_body_bytes} bytes", "413"),
        ("failed logins per address", _limit(s.auth_failure_rate, "per minute"), "429"),
    )


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def quota_rows(quotas: Quotas) -> tuple[Row, ...]:
    """Every quota an instance lives under (rates are per connection)."""
    return tuple(
        (*QUOTA_WORDS[item.name][:1], _shown(getattr(quotas, item.name)), QUOTA_WORDS[item.name][1])
        for item in fields(quotas)
    )
