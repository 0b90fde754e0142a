"""The per-instance quotas: one table, the one source of truth.

Every limit an instance lives under is a field of `Quotas`, with a default chosen for a
free, disposable namespace in a cluster shared with strangers, and a setting
(`QUOTA_<FIELD>`). EMQX enforces most of them itself: `emqx_settings()` is the exact set
of EMQX keys and values that emqx-config/ (HOCON and env forms) and the EMQX chart
examples carry, and tests/test_quotas.py checks that they say these numbers and that
every key exists in EMQX's schema for the version each file targets. The usage answers
(self-service and management) report `Quotas` as the instance's limits.

What EMQX cannot cap per namespace (no limiter for unmanaged namespaces: EMQX 6.2.2
`emqx_mt_limiter`, `emqx_mt_state:get_limiter_config/2`): the number of retained
messages of one instance (the retainer is one global table); the project counts them
from EMQX's REST API and removes the newest ones beyond `retained_messages`. Rates are
per connection, so an instance's total rate is at most `max_sessions` times them.

Changing a QUOTA_* setting changes what Zero EMQX reports and enforces itself; the keys
EMQX enforces must be changed in EMQX's configuration as well (`emqx_settings()` says
which).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Final

from tenants.errors import ConfigError
from tenants.settings import Environ

# EMQX's value grammars, as its schema parses them (tag 6.2.2, same in 6.0.2):
# rate/burst `emqx_limiter_schema:do_parse_rate/1` (apps/emqx/src/emqx_limiter/src/
# emqx_limiter_schema.erl; a burst is never "infinity", a rate never 0);
# bytesize `emqx_schema:to_bytesize/1`; duration `hocon_postprocess:duration/1`.
RATE_RE: Final = re.compile(r"^(\d+)(kb|mb|gb|b|)(?:/(\d*)([mshd]{1,2}))?$", re.IGNORECASE)
BYTESIZE_RE: Final = re.compile(r"^\d+(kb|mb|gb|b)?$", re.IGNORECASE)
DURATION_RE: Final = re.compile(r"^\d+(ms|s|m|h|d)$")

# The listeners the emqx-config files enable (MQTT over TLS, WebSocket over TLS): each
# carries the per-connection limits.
LISTENERS: Final = ("ssl.default", "wss.default")


@dataclass(frozen=True, slots=True)
class Quotas:
    """Each field's setting is `QUOTA_` + its name in upper case."""

    # Live sessions per instance (all its credentials together). EMQX refuses the next
    # CONNECT with 0x97 (MQTT 5) / 3 (3.1.1). A demo's few devices and a browser tab fit.
    max_sessions: int = 10
    # Per connection, inbound: 10 publishes/s as EMQX Serverless' free tier, and once a
    # minute a burst of 100 more. Past it QoS 1/2 PUBLISH get PUBACK/PUBREC 0x97, QoS 0
    # is dropped.
    messages_rate: str = "10/s"
    messages_burst: str = "100/1m"
    # Inbound bytes: one maximum-size packet a second always fits.
    bytes_rate: str = "256KB/s"
    bytes_burst: str = "2MB/1m"
    # Per connection, outbound (EMQX 6.1.2+ only): fan-out of a full instance's publishers
    # (10 x 10/s) to one subscriber. Past it QoS 0 is dropped, QoS 1/2 wait in the queue.
    delivery_messages_rate: str = "100/s"
    delivery_messages_burst: str = "1000/1m"
    delivery_bytes_rate: str = "1MB/s"
    delivery_bytes_burst: str = "10MB/1m"
    # MQTT packet size, both ways (DISCONNECT 0x95 past it).
    max_packet_size: str = "256KB"
    # Subscriptions per client (SUBACK 0x97 past it).
    max_subscriptions: int = 50
    # Messages queued for one session (offline or slow), QoS 1/2 only: an abandoned
    # session holds at most this much memory.
    max_mqueue_len: int = 100
    mqueue_store_qos0: bool = False
    # Topic levels, counted without the "<id>/" mountpoint.
    max_topic_levels: int = 16
    # Retained messages of one instance: counted and enforced by Zero EMQX (EMQX has one
    # global table), the newest ones beyond this are removed.
    retained_messages: int = 100
    # EMQX's global retainer cap: room for 1000 instances at their quota. Once full, no
    # instance can retain on a new topic until messages expire or are purged.
    retained_global_max: int = 100_000
    retained_max_payload_size: str = "64KB"
    # Safety net: no retained message lives longer than an instance's default TTL (7 d),
    # whatever Message-Expiry-Interval it asked for, even if a purge was missed; EMQX's
    # garbage collector looks every `retained_clear_interval`.
    retained_expiry: str = "7d"
    retained_clear_interval: str = "1h"

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            name = setting_name(item.name)
            if isinstance(value, bool):
                continue
            if isinstance(value, int):
                if value < 1:
                    raise ConfigError(f"{name} must be >= 1, got {value}")
                continue
            grammar = _GRAMMARS[item.name]
            if not grammar.pattern.match(value):
                raise ConfigError(f"{name} must be {grammar.what}, got {value!r}")
            if item.name.endswith("_rate") and _rate_amount(value) == 0:
                raise ConfigError(f"{name} must not be zero, got {value!r}")

    @classmethod
    def from_environ(cls, environ: Environ | None = None) -> Quotas:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for item in fields(cls):
            raw = env.get(setting_name(item.name), "").strip()
            if not raw:
                continue
            default = getattr(cls(), item.name)
            values[item.name] = _parse(setting_name(item.name), raw, default)
        return cls(**values)  # type: ignore[arg-type]

    def limits(self) -> dict[str, int | str | bool]:
        """Every limit by field name (what the usage answers show)."""
        return {item.name: getattr(self, item.name) for item in fields(self)}


@dataclass(frozen=True, slots=True)
class _Grammar:
    pattern: re.Pattern[str]
    what: str


_RATE = _Grammar(RATE_RE, 'an EMQX rate such as "10/s" or "1MB/s"')
_SIZE = _Grammar(BYTESIZE_RE, 'a byte size such as "64KB"')
_DURATION = _Grammar(DURATION_RE, 'a duration such as "7d" or "1h"')
_GRAMMARS: Final[Mapping[str, _Grammar]] = {
    "messages_rate": _RATE,
    "messages_burst": _RATE,
    "bytes_rate": _RATE,
    "bytes_burst": _RATE,
    "delivery_messages_rate": _RATE,
    "delivery_messages_burst": _RATE,
    "delivery_bytes_rate": _RATE,
    "delivery_bytes_burst": _RATE,
    "max_packet_size": _SIZE,
    "retained_max_payload_size": _SIZE,
    "retained_expiry": _DURATION,
    "retained_clear_interval": _DURATION,
}


def _rate_amount(value: str) -> int:
    match = RATE_RE.match(value)
    return int(match[1]) if match else 0


def setting_name(field_name: str) -> str:
    return "QUOTA_" + field_name.upper()


def _parse(name: str, raw: str, default: object) -> object:
    if isinstance(default, bool):
        lowered = raw.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    return raw


# Keys EMQX enforces, by field. `None` in LISTENER_KEYS' version column: every 6.x;
# "6.1.2": only EMQX 6.1.2 and later have the key (emqx_limiter_schema
# mqtt_limiter_names/0 gained delivery_messages and delivery_bytes in 6.1.2).
LISTENER_KEYS: Final[Mapping[str, str | None]] = {
    "messages_rate": None,
    "messages_burst": None,
    "bytes_rate": None,
    "bytes_burst": None,
    "delivery_messages_rate": "6.1.2",
    "delivery_messages_burst": "6.1.2",
    "delivery_bytes_rate": "6.1.2",
    "delivery_bytes_burst": "6.1.2",
}
GLOBAL_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "max_sessions": ("multi_tenancy.default_max_sessions",),
    "max_packet_size": ("mqtt.max_packet_size",),
    "max_subscriptions": ("mqtt.max_subscriptions",),
    "max_mqueue_len": ("mqtt.max_mqueue_len",),
    "mqueue_store_qos0": ("mqtt.mqueue_store_qos0",),
    "max_topic_levels": ("mqtt.max_topic_levels",),
    "retained_global_max": ("retainer.backend.max_retained_messages",),
    "retained_max_payload_size": ("retainer.max_payload_size",),
    # msg_expiry_interval: messages without Message-Expiry-Interval; the override caps
    # the others at garbage collection, never-expiring ones included.
    "retained_expiry": ("retainer.msg_expiry_interval", "retainer.msg_expiry_interval_override"),
    "retained_clear_interval": ("retainer.msg_clear_interval",),
}
# Set with the retained expiry: the override applies to "never expire" messages too.
FIXED_KEYS: Final[Mapping[str, object]] = {"retainer.allow_never_expire": False}
# Enforced by Zero EMQX, not EMQX.
PROJECT_ENFORCED: Final = frozenset({"retained_messages"})


def emqx_settings(quotas: Quotas, *, outbound: bool) -> dict[str, object]:
    """The EMQX keys (dotted, as in HOCON) and values that enforce `quotas`.
    `outbound`: the EMQX version has the delivery limiters (6.1.2+)."""
    settings: dict[str, object] = {}
    for field_name, keys in GLOBAL_KEYS.items():
        for key in keys:
            settings[key] = getattr(quotas, field_name)
    settings.update(FIXED_KEYS)
    for listener in LISTENERS:
        for field_name, since in LISTENER_KEYS.items():
            if since is None or outbound:
                settings[f"listeners.{listener}.{field_name}"] = getattr(quotas, field_name)
    return settings


DEFAULT_QUOTAS: Final = Quotas()
