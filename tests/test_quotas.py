"""tenants/quotas.py is the one table of limits: every emqx-config file (HOCON and env
forms), both EMQX chart examples and the README say its numbers, and every EMQX key it
sets exists in EMQX's schema for the version the file targets.

The schema facts below were read in emqx/emqx at the tags named (`git show <tag>:<file>`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenants.errors import ConfigError
from tenants.quotas import (
    DEFAULT_QUOTAS,
    LISTENERS,
    PROJECT_ENFORCED,
    Quotas,
    emqx_settings,
    setting_name,
)
from tests.test_chart import EXAMPLES, emqx_chart_env
from tests.test_emqx_config import (
    VARIANT_60,
    VARIANT_61,
    Variant,
    as_text,
    emqx_view,
    flatten,
    hocon_keys_of,
    load_hocon,
)

ROOT = Path(__file__).resolve().parent.parent

# --- EMQX's schema, per key ------------------------------------------------------------


@dataclass(frozen=True)
class SchemaFact:
    where: str  # file and function in emqx/emqx that defines the key
    since: tuple[int, int, int]  # the first release (of those read) that has it
    read_at: tuple[str, ...]  # tags the key was read at


_ALL_6 = ("6.0.0", "6.0.2", "6.0.3", "6.1.0", "6.1.1", "6.1.2", "6.2.0", "6.2.2")
_MT = 'apps/emqx_mt/src/emqx_mt_schema.erl fields("config")'
_MQTT = "apps/emqx/src/emqx_schema.erl"
_RET = "apps/emqx_retainer/src/emqx_retainer_schema.erl"
_LIM = (
    "apps/emqx/src/emqx_limiter/src/emqx_limiter_schema.erl mqtt_limiter_names(), "
    "appended to emqx_schema.erl base_listener()"
)
SCHEMA: dict[str, SchemaFact] = {
    "multi_tenancy.default_max_sessions": SchemaFact(_MT, (6, 0, 0), _ALL_6),
    "mqtt.max_packet_size": SchemaFact(f"{_MQTT} mqtt_general()", (6, 0, 0), _ALL_6),
    "mqtt.max_topic_levels": SchemaFact(f"{_MQTT} mqtt_general()", (6, 0, 0), _ALL_6),
    "mqtt.max_subscriptions": SchemaFact(f"{_MQTT} mqtt_session()", (6, 0, 0), _ALL_6),
    "mqtt.max_mqueue_len": SchemaFact(f"{_MQTT} mqtt_session()", (6, 0, 0), _ALL_6),
    "mqtt.mqueue_store_qos0": SchemaFact(f"{_MQTT} mqtt_session()", (6, 0, 0), _ALL_6),
    "retainer.max_payload_size": SchemaFact(f'{_RET} fields("retainer")', (6, 0, 0), _ALL_6),
    "retainer.msg_expiry_interval": SchemaFact(f'{_RET} fields("retainer")', (6, 0, 0), _ALL_6),
    "retainer.msg_expiry_interval_override": SchemaFact(
        f'{_RET} fields("retainer")', (6, 0, 0), _ALL_6
    ),
    "retainer.allow_never_expire": SchemaFact(f'{_RET} fields("retainer")', (6, 0, 0), _ALL_6),
    "retainer.msg_clear_interval": SchemaFact(f'{_RET} fields("retainer")', (6, 0, 0), _ALL_6),
    "retainer.backend.max_retained_messages": SchemaFact(
        f"{_RET} fields(mnesia_config)", (6, 0, 0), _ALL_6
    ),
    # The listener limiters: "<name>_rate" and "<name>_burst" for each name.
    **{
        f"listeners.<listener>.{name}_{kind}": SchemaFact(_LIM, (6, 0, 0), _ALL_6)
        for name in ("messages", "bytes")
        for kind in ("rate", "burst")
    },
    # delivery_messages and delivery_bytes joined mqtt_limiter_names() in 6.1.2 (absent
    # at 6.0.0-6.0.3, 6.1.0 and 6.1.1; present at 6.1.2, 6.2.0 and 6.2.2).
    **{
        f"listeners.<listener>.{name}_{kind}": SchemaFact(_LIM, (6, 1, 2), _ALL_6)
        for name in ("delivery_messages", "delivery_bytes")
        for kind in ("rate", "burst")
    },
}

# The oldest EMQX each file is for: emqx-6.0.* was run on a real 6.0.2 broker;
# emqx.* has the 6.1.2 outbound limiters (and its API key line needs 6.1.2 / 6.2.1).
MINIMUM_VERSION = {VARIANT_60.name: (6, 0, 2), VARIANT_61.name: (6, 1, 2)}
MAXIMUM_LINE = {VARIANT_60.name: (6, 0), VARIANT_61.name: (6, 2)}


def schema_fact(key: str) -> SchemaFact | None:
    for listener in LISTENERS:
        prefix = f"listeners.{listener}."
        if key.startswith(prefix):
            return SCHEMA.get("listeners.<listener>." + key[len(prefix) :])
    return SCHEMA.get(key)


def quota_keys(variant: Variant) -> dict[str, Any]:
    return emqx_settings(DEFAULT_QUOTAS, outbound=variant is VARIANT_61)


VARIANTS = [VARIANT_61, VARIANT_60]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_every_quota_key_exists_in_the_schema_of_the_files_version(variant: Variant) -> None:
    oldest = MINIMUM_VERSION[variant.name]
    for key in quota_keys(variant):
        fact = schema_fact(key)
        assert fact is not None, f"{key}: no schema fact recorded"
        assert fact.since <= oldest, f"{key} needs EMQX {fact.since}, {variant.name} is older"


def test_the_60_files_leave_out_what_only_612_has() -> None:
    """An unknown key fails EMQX's config check: 6.0 gets no delivery_* limiter."""
    keys_60 = quota_keys(VARIANT_60)
    newer = {k for k in quota_keys(VARIANT_61) if (f := schema_fact(k)) and f.since > (6, 0, 3)}
    assert newer  # the outbound limits
    assert not newer & keys_60.keys()
    assert all(".delivery_" in k for k in newer)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_the_hocon_file_says_the_quota_table(variant: Variant) -> None:
    config = dict(flatten(load_hocon(variant.conf)))
    for key, value in quota_keys(variant).items():
        assert config.get(key) == value, key


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_the_env_file_says_the_quota_table(variant: Variant) -> None:
    config = dict(flatten(emqx_view(hocon_keys_of(variant))))
    for key, value in quota_keys(variant).items():
        assert config.get(key) == as_text(value), key


@pytest.mark.parametrize(
    ("name", "variant"),
    [("emqx-values.yaml", VARIANT_61), ("emqx-values-6.0.yaml", VARIANT_60)],
)
def test_the_emqx_chart_example_says_the_quota_table(name: str, variant: Variant) -> None:
    values = yaml.safe_load((EXAMPLES / name).read_text())
    config = dict(flatten(emqx_view(emqx_chart_env(values["emqxConfig"]))))
    for key, value in quota_keys(variant).items():
        assert config.get(key) == as_text(value), key


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_every_enabled_listener_carries_the_rate_limits(variant: Variant) -> None:
    config = dict(flatten(load_hocon(variant.conf)))
    enabled = {
        key.removeprefix("listeners.").removesuffix(".bind")
        for key in config
        if key.startswith("listeners.") and key.endswith(".bind")
    }
    assert enabled == set(LISTENERS)
    for listener in enabled:
        assert config[f"listeners.{listener}.messages_rate"] == DEFAULT_QUOTAS.messages_rate
        assert config[f"listeners.{listener}.bytes_rate"] == DEFAULT_QUOTAS.bytes_rate


def test_every_quota_is_either_emqxs_or_the_projects() -> None:
    """A field that no EMQX key carries is one Zero EMQX enforces itself, and says so."""
    used = set()
    full = emqx_settings(DEFAULT_QUOTAS, outbound=True)
    for name, value in DEFAULT_QUOTAS.limits().items():
        changed = Quotas(**{name: _other(value)})
        if emqx_settings(changed, outbound=True) != full:
            used.add(name)
    assert set(DEFAULT_QUOTAS.limits()) - used == PROJECT_ENFORCED


def _other(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    match = re.match(r"^(\d+)(.*)$", value)
    assert match is not None
    return f"{int(match[1]) + 1}{match[2]}"


# --- The README's table ------------------------------------------------------------------


def readme_quota_rows() -> dict[str, str]:
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        match = re.match(r"^\| [^|]+ \| `(QUOTA_[A-Z0-9_]+)` \| `([^`]*)` \|", line)
        if match:
            rows[match[1]] = match[2]
    return rows


def test_the_readme_table_lists_every_quota_with_its_default() -> None:
    expected = {
        setting_name(name): str(as_text(value)) for name, value in DEFAULT_QUOTAS.limits().items()
    }
    assert readme_quota_rows() == expected


# --- The settings ------------------------------------------------------------------------


def test_defaults_without_settings() -> None:
    assert Quotas.from_environ({}) == DEFAULT_QUOTAS
    assert DEFAULT_QUOTAS.max_sessions == 10
    assert DEFAULT_QUOTAS.retained_messages == 100


def test_each_setting_is_read_once_from_the_environment() -> None:
    quotas = Quotas.from_environ(
        {
            "QUOTA_MAX_SESSIONS": "3",
            "QUOTA_MESSAGES_RATE": "5/s",
            "QUOTA_MQUEUE_STORE_QOS0": "true",
            "QUOTA_RETAINED_EXPIRY": "1d",
            "QUOTA_RETAINED_MESSAGES": " 7 ",
        }
    )
    assert quotas.max_sessions == 3
    assert quotas.messages_rate == "5/s"
    assert quotas.mqueue_store_qos0 is True
    assert quotas.retained_expiry == "1d"
    assert quotas.retained_messages == 7
    assert emqx_settings(quotas, outbound=False)["multi_tenancy.default_max_sessions"] == 3


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("QUOTA_MAX_SESSIONS", "ten", "integer"),
        ("QUOTA_MAX_SESSIONS", "0", ">= 1"),
        ("QUOTA_MESSAGES_RATE", "fast", "EMQX rate"),
        ("QUOTA_MESSAGES_RATE", "0/s", "zero"),
        ("QUOTA_MAX_PACKET_SIZE", "1 MB", "byte size"),
        ("QUOTA_RETAINED_EXPIRY", "7", "duration"),
        ("QUOTA_MQUEUE_STORE_QOS0", "maybe", "true or false"),
    ],
)
def test_a_bad_setting_is_a_clear_error(name: str, raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        Quotas.from_environ({name: raw})
    assert name in str(caught.value)


def test_rates_follow_emqxs_grammar() -> None:
    """emqx_limiter_schema:do_parse_rate/1: capacity with an optional unit, then an
    optional "/<n><unit>" interval (the same grammar for rates and bursts)."""
    for good in ("10/s", "100/1m", "256KB/s", "10MB/1m", "5", "1gb/2h"):
        Quotas(messages_rate=good)
    for bad in ("10 per s", "/s", "10/x", "-1/s"):
        with pytest.raises(ConfigError):
            Quotas(messages_rate=bad)
