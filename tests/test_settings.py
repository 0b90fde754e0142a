"""The manager's settings of the HTTP edge, callers and limits: defaults and refusals."""

from __future__ import annotations

import pytest

from manager.networks import Prefixes
from manager.settings import ManagerSettings
from tenants.errors import ConfigError


def test_defaults() -> None:
    s = ManagerSettings.from_environ({})
    assert s.proxy_header == "x-forwarded-for"
    assert s.prefixes == Prefixes(ipv4_group=32, ipv6_group=64, ipv4_network=24, ipv6_network=48)
    assert s.per_network_max_live == 50
    assert s.max_live_reserved == 1000  # a tenth of MAX_LIVE_INSTANCES
    assert (s.header_timeout_seconds, s.body_timeout_seconds) == (10.0, 10.0)
    assert (s.keepalive_timeout_seconds, s.max_connections) == (75.0, 1000)
    assert s.ready_interval_seconds == 5.0
    assert ManagerSettings() == ManagerSettings.from_environ({})


def test_values_are_read() -> None:
    s = ManagerSettings.from_environ(
        {
            "PROXY_HEADER": "Forwarded",
            "IPV4_GROUP_PREFIX": "24",
            "IPV6_GROUP_PREFIX": "56",
            "IPV4_NETWORK_PREFIX": "16",
            "IPV6_NETWORK_PREFIX": "32",
            "PER_NETWORK_MAX_LIVE": "7",
            "MAX_LIVE_INSTANCES": "50",
            "HEADER_TIMEOUT_SECONDS": "1.5",
            "BODY_TIMEOUT_SECONDS": "2.5",
            "KEEPALIVE_TIMEOUT_SECONDS": "3.5",
            "MAX_CONNECTIONS": "9",
            "READY_INTERVAL_SECONDS": "4.5",
        }
    )
    assert s.proxy_header == "forwarded"
    assert s.prefixes == Prefixes(24, 56, 16, 32)
    assert (s.per_network_max_live, s.max_live_reserved) == (7, 5)
    assert (s.header_timeout_seconds, s.body_timeout_seconds) == (1.5, 2.5)
    assert (s.keepalive_timeout_seconds, s.max_connections) == (3.5, 9)
    assert s.ready_interval_seconds == 4.5
    assert ManagerSettings.from_environ({"MAX_LIVE_RESERVED": "0"}).max_live_reserved == 0
    assert ManagerSettings.from_environ({"MAX_LIVE_INSTANCES": "0"}).max_live_reserved == 0


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PROXY_HEADER": "x-real-ip"}, "PROXY_HEADER"),
        ({"IPV4_GROUP_PREFIX": "33"}, "IPV4_GROUP_PREFIX"),
        ({"IPV6_GROUP_PREFIX": "129"}, "IPV6_GROUP_PREFIX"),
        ({"IPV4_NETWORK_PREFIX": "33"}, "IPV4_NETWORK_PREFIX"),
        ({"IPV6_NETWORK_PREFIX": "129"}, "IPV6_NETWORK_PREFIX"),
        ({"IPV4_GROUP_PREFIX": "16"}, "NETWORK_PREFIX"),  # network /24 longer than group
        ({"IPV6_NETWORK_PREFIX": "96"}, "NETWORK_PREFIX"),
        ({"MAX_LIVE_INSTANCES": "10", "MAX_LIVE_RESERVED": "10"}, "MAX_LIVE_RESERVED"),
        ({"HEADER_TIMEOUT_SECONDS": "0"}, "HEADER_TIMEOUT_SECONDS"),
        ({"BODY_TIMEOUT_SECONDS": "-1"}, "BODY_TIMEOUT_SECONDS"),
        ({"KEEPALIVE_TIMEOUT_SECONDS": "0"}, "KEEPALIVE_TIMEOUT_SECONDS"),
        ({"MAX_CONNECTIONS": "0"}, "MAX_CONNECTIONS"),
        ({"READY_INTERVAL_SECONDS": "0"}, "READY_INTERVAL_SECONDS"),
        ({"PER_NETWORK_MAX_LIVE": "-1"}, "PER_NETWORK_MAX_LIVE"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        ManagerSettings.from_environ(env)


def test_edge_prefixes_are_accepted() -> None:
    s = ManagerSettings.from_environ(
        {"IPV4_GROUP_PREFIX": "32", "IPV4_NETWORK_PREFIX": "32", "IPV6_NETWORK_PREFIX": "0"}
    )
    assert (s.prefixes.ipv4_network, s.prefixes.ipv6_network) == (32, 0)
    with pytest.raises(ConfigError):
        ManagerSettings.from_environ({"IPV4_GROUP_PREFIX": "23"})
