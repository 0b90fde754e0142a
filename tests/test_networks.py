"""Callers grouped by network, and the hash records keep of them."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from pathlib import Path

import httpx

from manager.forwarded import Opaque
from manager.metrics import METRICS as METRICS_KEY
from manager.metrics import Tier
from manager.networks import (
    UNKNOWN,
    CallerKeys,
    Prefixes,
    caller_keys,
    hash_caller,
    network_of,
)
from tenants.local_store import LocalStore
from tests.manager_client import RunningManager, manager_for

KEY = b"k" * 16
PROXY = {"TRUSTED_PROXIES": "127.0.0.0/8"}


def test_ipv4_is_grouped_by_address_and_networked_by_slash_24() -> None:
    keys = caller_keys(ipaddress.ip_address("198.51.100.7"), Prefixes())
    assert keys == CallerKeys("198.51.100.7/32", "198.51.100.0/24")


def test_ipv6_is_grouped_by_slash_64_and_networked_by_slash_48() -> None:
    keys = caller_keys(ipaddress.ip_address("2001:db8:1:2:3:4:5:6"), Prefixes())
    assert keys == CallerKeys("2001:db8:1:2::/64", "2001:db8:1::/48")


def test_prefixes_are_configurable() -> None:
    prefixes = Prefixes(ipv4_group=24, ipv6_group=56, ipv4_network=16, ipv6_network=32)
    assert caller_keys(ipaddress.ip_address("198.51.100.7"), prefixes) == CallerKeys(
        "198.51.100.0/24", "198.51.0.0/16"
    )
    assert caller_keys(ipaddress.ip_address("2001:db8:1:2ff::1"), prefixes) == CallerKeys(
        "2001:db8:1:200::/56", "2001:db8::/32"
    )


def test_opaque_and_unknown_clients_are_groups_of_their_own() -> None:
    assert caller_keys(Opaque("_hidden"), Prefixes()) == CallerKeys(
        "opaque:_hidden", "opaque:_hidden"
    )
    assert caller_keys(None, Prefixes()) == UNKNOWN


def test_the_hash_is_network_digest_then_group_digest() -> None:
    keys = CallerKeys("198.51.100.7/32", "198.51.100.0/24")
    network = hmac.new(KEY, b"network:198.51.100.0/24", hashlib.sha256).hexdigest()[:16]
    group = hmac.new(KEY, b"group:198.51.100.7/32", hashlib.sha256).hexdigest()[:16]
    assert hash_caller(KEY, keys) == network + group
    assert network_of(hash_caller(KEY, keys)) == network
    other = hash_caller(b"j" * 16, keys)
    assert other != hash_caller(KEY, keys)  # keyed


async def post_from(m: RunningManager, address: str) -> httpx.Response:
    return await m.client.post("/v1/instances", headers={"X-Forwarded-For": address})


async def test_rotating_addresses_inside_a_slash_64_is_one_caller(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    env = {**PROXY, "PER_IP_RATE": "0", "PER_IP_MAX_LIVE": "2"}
    try:
        async with manager_for(store, env) as m:
            for host in ("1", "2"):
                assert (await post_from(m, f"2001:db8:0:1::{host}")).status_code == 201
            refused = await post_from(m, "2001:db8:0:1:ffff::3")
            assert refused.status_code == 429
            assert "address" in refused.text
            # The next /64 is another caller.
            assert (await post_from(m, "2001:db8:0:2::1")).status_code == 201
    finally:
        await store.close()


async def test_the_rate_limit_counts_the_group(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    env = {**PROXY, "PER_IP_RATE": "2", "PER_IP_MAX_LIVE": "0"}
    try:
        async with manager_for(store, env) as m:
            for host in ("1", "2"):
                assert (await post_from(m, f"2001:db8::{host}")).status_code == 201
            assert (await post_from(m, "2001:db8::3")).status_code == 429
            metrics = m.app[METRICS_KEY]
            assert metrics.refusals(Tier.RATE) == 1
    finally:
        await store.close()


async def test_a_network_at_its_cap_does_not_lock_out_another(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    env = {
        **PROXY,
        "PER_IP_RATE": "0",
        "PER_IP_MAX_LIVE": "2",
        "PER_NETWORK_MAX_LIVE": "3",
        "MAX_LIVE_INSTANCES": "6",
        "MAX_LIVE_RESERVED": "2",
    }
    try:
        async with manager_for(store, env) as m:
            metrics = m.app[METRICS_KEY]
            # One /24, two addresses: its group cap, then its network cap.
            for address in ("198.51.100.1", "198.51.100.1", "198.51.100.2"):
                assert (await post_from(m, address)).status_code == 201
            refused = await post_from(m, "198.51.100.3")
            assert refused.status_code == 429
            assert "network" in refused.text
            assert int(refused.headers["Retry-After"]) >= 1
            assert metrics.refusals(Tier.NETWORK) == 1
            assert (await post_from(m, "198.51.100.1")).status_code == 429
            assert metrics.refusals(Tier.GROUP) == 1
            # Another network fills what is open to all (6 - 2 reserved) ...
            assert (await post_from(m, "203.0.113.1")).status_code == 201
            refused = await post_from(m, "203.0.113.2")
            assert refused.status_code == 429 and "service" in refused.text
            assert metrics.refusals(Tier.GLOBAL) == 1
            # ... and newcomers still get in: one each, from the reserve.
            assert (await post_from(m, "192.0.2.1")).status_code == 201
            assert (await post_from(m, "192.0.2.2")).status_code == 429
            assert (await post_from(m, "2001:db8::1")).status_code == 201
            # The global cap itself still holds.
            assert (await post_from(m, "2001:db9::1")).status_code == 429
            assert metrics.refusals(Tier.GLOBAL) == 3
            scraped = await m.client.get("/metrics")
            assert 'zero_emqx_manager_refusals_total{tier="network"} 1.0' in scraped.text
        # The counts are the store's: a restarted manager refuses the same callers.
        async with manager_for(store, env) as m:
            assert (await post_from(m, "198.51.100.9")).status_code == 429
            assert (await post_from(m, "198.51.100.1")).status_code == 429
        on_disk = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
        assert b"198.51.100" not in on_disk and b"2001:db8" not in on_disk
    finally:
        await store.close()
