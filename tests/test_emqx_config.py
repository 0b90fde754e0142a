"""emqx-config/: every HOCON and env file parses, carries exactly the settings Zero EMQX
relies on (so a typo in a key or a value fails here, not silently in EMQX, which drops
an unknown env var with a warning), and the HOCON and env forms of each variant agree.

The expected values below are the one source that test_compose.py and test_chart.py
check the Compose file and the EMQX Helm values against.

How EMQX reads an env var (hocon 0.45.9 `hocon_tconf.erl`, used by EMQX 6.2.2): the
name without `EMQX_`, lower-cased, split at `__`, is the path (a number is a 1-based
array index); the value is parsed as HOCON and, if it is not valid HOCON, taken as a
plain string. `emqx_view` models that: values that open a HOCON array, object or quoted
string are parsed (with pyhocon), anything else is the plain string.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pyhocon import ConfigFactory, ConfigTree

from tenants.credentials import (
    INSTANCE_ID_LENGTH,
    Rights,
    claims_a_namespace,
    namespace_of,
    new_credential_id,
    new_instance_id,
    scoped_username,
)
from tenants.quotas import DEFAULT_QUOTAS, emqx_settings

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "emqx-config"

# --- The expected values (shared with test_compose.py and test_chart.py) -------------

EXHOOK_NAME = "zero"
EXHOOK_URL = "http://zero-emqx-exhook:9000"
API_KEYS_FILE = "/opt/emqx/etc/zero-emqx/api_keys"
API_KEY_ROLE = "administrator"
API_KEY_SCOPES = "connections,cluster_operations,system,access_control"
"""connections: /clients; cluster_operations: /mt/*; system: /configs/global_zone and
/listeners; access_control: /authorization/* (each module's scopes/0, tag 6.2.2)."""
ACL_PATH = "/opt/emqx/etc/zero-emqx-acl/acl.conf"
ACL_FILE_61 = CONFIG_DIR / "acl.conf"
ACL_FILE_60 = CONFIG_DIR / "acl-6.0.conf"
CLIENTID_OVERRIDE = "concat([username, '-', clientid])"
API_BIND = "0.0.0.0:18083"
MQTTS_BIND = "0.0.0.0:8883"
WSS_BIND = "0.0.0.0:8084"
WSS_PATH = "/mqtt"
MOUNTPOINT_60 = "${client_attrs.tns}/"
TNS_EXPRESSION = "substr(username, 0, 21)"
SECURITY_PROFILE = "hardened"

API_KEY_LINE_RE = re.compile(
    rf"^(?P<key>[^:\s]+):(?P<secret>[^:\s]+):{API_KEY_ROLE}:{re.escape(API_KEY_SCOPES)}$"
)
"""The line of api_key.bootstrap_file (apps/emqx_management/src/emqx_mgmt_auth.erl)."""

_COMMON: dict[str, Any] = {
    # apps/emqx_exhook/src/emqx_exhook_schema.erl
    "exhook.servers.1.name": EXHOOK_NAME,
    "exhook.servers.1.enable": True,
    "exhook.servers.1.url": EXHOOK_URL,
    "exhook.servers.1.request_timeout": "5s",
    "exhook.servers.1.failed_action": "deny",
    "exhook.servers.1.auto_reconnect": "2s",
    "exhook.servers.1.pool_size": 16,
    # apps/emqx/src/emqx_schema.erl, mqtt_general()
    "mqtt.client_attrs_init.1.expression": TNS_EXPRESSION,
    "mqtt.client_attrs_init.1.set_as_attr": "tns",
    "mqtt.clientid_override": CLIENTID_OVERRIDE,
    # apps/emqx_auth_mnesia/src/emqx_authn_mnesia_schema.erl
    "authentication.1.mechanism": "password_based",
    "authentication.1.backend": "built_in_database",
    "authentication.1.user_id_type": "username",
    "authentication.1.bootstrap_file": "",
    # apps/emqx/src/emqx_schema.erl authz_fields(); emqx_authz_schema.erl sources
    "authorization.sources.1.type": "file",
    "authorization.sources.1.enable": True,
    "authorization.sources.1.path": ACL_PATH,
    "authorization.no_match": "deny",
    "authorization.deny_action": "ignore",
    "authorization.cache.enable": True,
    "authorization.cache.max_size": 32,
    "authorization.cache.ttl": "1m",
    # apps/emqx_management/src/emqx_mgmt_api_key_schema.erl
    "api_key.bootstrap_file": API_KEYS_FILE,
    # apps/emqx/src/emqx_schema.erl base_listener(), fields("ws_opts")
    "listeners.tcp.default.enable": False,
    "listeners.ws.default.enable": False,
    "listeners.ssl.default.bind": MQTTS_BIND,
    "listeners.ssl.default.enable_authn": True,
    "listeners.wss.default.bind": WSS_BIND,
    "listeners.wss.default.enable_authn": True,
    "listeners.wss.default.websocket.mqtt_path": WSS_PATH,
    # apps/emqx_dashboard/src/emqx_dashboard_schema.erl bind()
    "dashboard.listeners.http.bind": API_BIND,
}

# The quotas: tenants/quotas.py's defaults, the outbound limits on 6.1.2+ only (the keys
# and the versions that have them: tests/test_quotas.py).
QUOTAS_61 = emqx_settings(DEFAULT_QUOTAS, outbound=True)
QUOTAS_60 = emqx_settings(DEFAULT_QUOTAS, outbound=False)

EXPECTED_61: dict[str, Any] = {
    **_COMMON,
    **QUOTAS_61,
    "mqtt.namespace_as_mountpoint": True,  # 6.1.0+
    "authorization.include_mountpoint": True,  # 6.1.0+
}
EXPECTED_60: dict[str, Any] = {
    **_COMMON,
    **QUOTAS_60,
    **{
        f"listeners.{kind}.default.mountpoint": MOUNTPOINT_60
        for kind in ("tcp", "ws", "ssl", "wss")
    },
}
KEYS_ONLY_IN_61 = {
    "mqtt.namespace_as_mountpoint",
    "authorization.include_mountpoint",
    *(QUOTAS_61.keys() - QUOTAS_60.keys()),
}


@dataclass(frozen=True)
class Variant:
    name: str
    conf: Path
    env: Path
    expected: Mapping[str, Any]
    # Environment variables that are not HOCON keys (read with os:getenv by EMQX).
    env_only: Mapping[str, str] = field(default_factory=dict)


VARIANTS = [
    Variant(
        "6.1+",
        CONFIG_DIR / "emqx.conf",
        CONFIG_DIR / "emqx.env",
        EXPECTED_61,
        {"EMQX_SECURITY_PROFILE": SECURITY_PROFILE},
    ),
    Variant("6.0", CONFIG_DIR / "emqx-6.0.conf", CONFIG_DIR / "emqx-6.0.env", EXPECTED_60),
]
VARIANT_61, VARIANT_60 = VARIANTS

# --- Parsing -------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """pyhocon's ConfigTree/list values as plain dicts and lists."""
    if isinstance(value, ConfigTree):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


@functools.cache
def _parse_hocon(path: Path) -> dict[str, Any]:
    tree = plain(ConfigFactory.parse_file(str(path), resolve=True))
    assert isinstance(tree, dict)
    return tree


def load_hocon(path: Path) -> dict[str, Any]:
    """The HOCON file as plain data (a fresh copy: parsing is the slow part)."""
    return copy.deepcopy(_parse_hocon(path))


def flatten(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted paths to leaves; list elements are numbered from 1, as in EMQX's env vars.
    An empty list or dict is a leaf."""
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            yield from flatten(value, f"{prefix}{key}.")
    elif isinstance(tree, list) and tree:
        for index, value in enumerate(tree, start=1):
            yield from flatten(value, f"{prefix}{index}.")
    else:
        yield prefix.rstrip("."), tree


_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def load_env_file(path: Path) -> dict[str, str]:
    """A Docker Compose env_file, restricted to the forms we use so that Compose,
    Kubernetes and this parser agree: `NAME=value` taken as is, or `NAME='value'` taken
    literally without the quotes. Outer double quotes, `$` or ` #` in an unquoted value
    (Compose would interpolate or cut them) and duplicate names are refused."""
    result: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        where = f"{path.name}:{number}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep and _ENV_NAME.match(name), f"{where}: not NAME=value: {line!r}"
        assert name not in result, f"{where}: {name} set twice"
        assert value == value.strip(), f"{where}: surrounding whitespace in the value"
        if value.startswith("'"):
            assert len(value) >= 2 and value.endswith("'"), f"{where}: unclosed quote"
            value = value[1:-1]
            assert "'" not in value, f"{where}: a quote inside a single-quoted value"
        else:
            assert not value.startswith('"'), f"{where}: use single quotes"
            assert "$" not in value, f"{where}: `$` in an unquoted value (Compose interpolates)"
            assert " #" not in value, f"{where}: ` #` in an unquoted value (Compose cuts it)"
        result[name] = value
    return result


def env_path(name: str) -> list[str]:
    assert name.startswith("EMQX_"), name
    return name[len("EMQX_") :].lower().split("__")


def emqx_value(raw: str) -> Any:
    """What EMQX makes of an env value (see the module doc)."""
    if raw[:1] in ("[", "{", '"'):
        return plain(ConfigFactory.parse_string(f"v = {raw}")["v"])
    return raw


def _indexed_to_lists(tree: Any) -> Any:
    if isinstance(tree, dict):
        tree = {key: _indexed_to_lists(value) for key, value in tree.items()}
        keys = list(tree)
        if keys and all(key.isdigit() for key in keys):
            assert sorted(int(k) for k in keys) == list(range(1, len(keys) + 1)), keys
            return [tree[str(i)] for i in range(1, len(keys) + 1)]
    return tree


def emqx_view(env: Mapping[str, str]) -> dict[str, Any]:
    """The configuration tree EMQX builds from these env vars."""
    tree: dict[str, Any] = {}
    for name, raw in sorted(env.items()):
        *parents, leaf = env_path(name)
        node = tree
        for part in parents:
            child = node.setdefault(part, {})
            assert isinstance(child, dict), f"{name}: {part} is both a value and a parent"
            node = child
        assert leaf not in node, f"{name} set twice"
        node[leaf] = emqx_value(raw)
    result = _indexed_to_lists(tree)
    assert isinstance(result, dict)
    return result


def as_text(value: Any) -> Any:
    """Scalars as EMQX's env strings ("true", "16"), so both forms compare alike."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return {key: as_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_text(item) for item in value]
    return value


def hocon_keys_of(variant: Variant) -> dict[str, str]:
    """The env file's variables that are HOCON keys."""
    env = load_env_file(variant.env)
    return {name: value for name, value in env.items() if name not in variant.env_only}


# --- Tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_hocon_file_has_exactly_the_expected_settings(variant: Variant) -> None:
    found = dict(flatten(load_hocon(variant.conf)))
    assert found == dict(variant.expected)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_env_file_has_exactly_the_expected_settings(variant: Variant) -> None:
    env = load_env_file(variant.env)
    for name, value in variant.env_only.items():
        assert env.get(name) == value, name
    found = dict(flatten(emqx_view(hocon_keys_of(variant))))
    # as_text on both sides: a value inside an env var's HOCON structure is typed.
    assert as_text(found) == as_text(dict(variant.expected))


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_hocon_and_env_forms_agree(variant: Variant) -> None:
    assert as_text(emqx_view(hocon_keys_of(variant))) == as_text(load_hocon(variant.conf))


def test_60_files_carry_no_61_keys() -> None:
    """An unknown key in a HOCON file fails EMQX 6.0's config check."""
    conf = dict(flatten(load_hocon(VARIANT_60.conf)))
    env = dict(flatten(emqx_view(hocon_keys_of(VARIANT_60))))
    assert not KEYS_ONLY_IN_61 & (conf.keys() | env.keys())
    assert "EMQX_SECURITY_PROFILE" not in load_env_file(VARIANT_60.env)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_fails_closed(variant: Variant) -> None:
    config = dict(flatten(load_hocon(variant.conf)))
    # One authenticator that knows no user: the chain says "not authorized" unless the
    # hook admits the client.
    authenticators = load_hocon(variant.conf)["authentication"]
    assert len(authenticators) == 1
    assert config["authentication.1.backend"] == "built_in_database"
    assert config["authentication.1.bootstrap_file"] == ""
    # No listener skips authentication; the hook's failures deny.
    assert not [k for k, v in config.items() if k.endswith(".enable_authn") and v is not True]
    assert config["exhook.servers.1.failed_action"] == "deny"
    # Authorization: our file source is the only one, and nothing matched is denied.
    sources = load_hocon(variant.conf)["authorization"]["sources"]
    assert sources == [{"type": "file", "enable": True, "path": ACL_PATH}]
    assert config["authorization.no_match"] == "deny"


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_no_plaintext_listener_and_explicit_binds(variant: Variant) -> None:
    """tcp/ws are off; every bind names an address (hardened binds a bare port to
    loopback only)."""
    config = dict(flatten(load_hocon(variant.conf)))
    assert config["listeners.tcp.default.enable"] is False
    assert config["listeners.ws.default.enable"] is False
    binds = {k: v for k, v in config.items() if k.endswith(".bind")}
    assert binds
    for key, value in binds.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+:\d+", str(value)), f"{key} = {value!r}"


def test_61_mounts_by_namespace_not_listener() -> None:
    """namespace_as_mountpoint is ignored on a listener with its own mountpoint."""
    config = dict(flatten(load_hocon(VARIANT_61.conf)))
    assert config["mqtt.namespace_as_mountpoint"] is True
    assert not [k for k in config if k.endswith(".mountpoint")]


def test_60_mounts_every_listener() -> None:
    config = dict(flatten(load_hocon(VARIANT_60.conf)))
    for kind in ("tcp", "ws", "ssl", "wss"):
        assert config[f"listeners.{kind}.default.mountpoint"] == MOUNTPOINT_60


def test_exhook_url_has_an_explicit_port() -> None:
    """EMQX refuses an ExHook url without a port (emqx_exhook_server:channel_opts/1)."""
    assert re.fullmatch(r"https?://[a-z0-9.-]+:\d+", EXHOOK_URL)


def test_api_key_line_format() -> None:
    assert API_KEY_LINE_RE.match(f"zero-exhook:s3cret:{API_KEY_ROLE}:{API_KEY_SCOPES}")
    assert not API_KEY_LINE_RE.match(f"zero:exhook:s3cret:{API_KEY_ROLE}:{API_KEY_SCOPES}")
    assert not API_KEY_LINE_RE.match("zero-exhook:s3cret")


def test_env_model_matches_emqx_parsing() -> None:
    """The cases the env files rely on."""
    assert emqx_value("[]") == []
    assert emqx_value('"${client_attrs.tns}/"') == MOUNTPOINT_60
    assert emqx_value(CLIENTID_OVERRIDE) == CLIENTID_OVERRIDE
    assert emqx_value('[{a = "b"}]') == [{"a": "b"}]
    assert emqx_view({"EMQX_A__1__B": "x", "EMQX_A__2__B": "y"}) == {"a": [{"b": "x"}, {"b": "y"}]}


def variform_concat_override(username: str, clientid: str) -> str:
    """What `clientid_override = "concat([username, '-', clientid])"` renders: EMQX
    renders the variform on the clientinfo after `set_username/2` and before
    authentication (emqx_channel.erl `enrich_client/2`, `maybe_override_clientid/2`,
    `override_clientid/2` at 6.2.2 and 6.0.2; `username` resolves through
    emqx_variform.erl `resolve_var_value/3`); concat/1 joins the strings."""
    match = re.fullmatch(r"concat\(\[username, '(.)', clientid\]\)", CLIENTID_OVERRIDE)
    assert match is not None
    return f"{username}{match[1]}{clientid}"


def test_every_username_has_its_own_client_id_space() -> None:
    """The same client id under the owner's and a scoped credential's username gives two
    EMQX client ids, so neither can take over nor resume the other's session."""
    instance_id = new_instance_id()
    names = [instance_id, *(scoped_username(instance_id, new_credential_id(r)) for r in Rights)]
    ids = {variform_concat_override(name, "dash") for name in names}
    assert len(ids) == len(names)
    for name in names:
        assert variform_concat_override(name, "dash") == f"{name}-dash"


def variform_substr(text: str, start: int, length: int) -> str:
    """EMQX's `substr/3` (apps/emqx_utils/src/emqx_variform_bif.erl, 6.2.2 and e6.0.1):
    `string:slice(S, Start, Length)`, 0-based, shorter when the string ends first (its
    own tests: `substr('atom', 1, 2)` is `<<"to">>`). Graphemes are characters here: our
    usernames are ASCII."""
    return text[start : start + length]


def test_the_namespace_is_the_instance_id_for_both_username_forms() -> None:
    match = re.fullmatch(r"substr\(username, (\d+), (\d+)\)", TNS_EXPRESSION)
    assert match is not None
    start, length = int(match[1]), int(match[2])
    assert variform_substr("atom", 1, 2) == "to"
    assert (start, length) == (0, INSTANCE_ID_LENGTH)
    instance_id = new_instance_id()
    assert len(instance_id) == INSTANCE_ID_LENGTH
    for rights in Rights:
        username = scoped_username(instance_id, new_credential_id(rights))
        tns = variform_substr(username, start, length)
        assert tns == namespace_of(username) == namespace_of(instance_id) == instance_id
    # Any other username whose first 21 characters are an instance id would land in that
    # namespace too: the hook claims (and refuses) it instead of ignoring it.
    assert claims_a_namespace(instance_id + "zzz")
    assert not claims_a_namespace("emqx-0123")
