"""Callers grouped by network: the keys every per-caller limit counts by.

One host owns more than one address: an IPv6 host is given a /64 (2^64 addresses), so
limits keyed by the exact address count nothing. A caller's *group* is its address
masked to a prefix (IPv4 /32, IPv6 /64 by default) and its *network* a wider one (IPv4
/24, IPv6 /48): per-caller limits count the group, the network tier counts the
network. A client a trusted proxy named by something other than an address (an
`Opaque` hop) is a group and a network of its own.

What a record stores (`Tenant.ip_hash`, 32 hex: a valid label value) is a keyed hash of
both, never the address: 16 hex of HMAC-SHA256(key, "network:" + network) followed by
16 hex of HMAC-SHA256(key, "group:" + group). Records of one group share the whole
value, records of one network its first 16 hex, so the index (tenants/index.py) counts
both from the store: the counts hold across restarts and replicas (every replica must
share IP_HASH_KEY and the prefix settings). Changing a prefix setting starts new counts:
records made before count under their old keys until they expire.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass

from manager.forwarded import Hop, Opaque
from tenants.index import NETWORK_KEY_LEN  # the first part of ip_hash


@dataclass(frozen=True)
class Prefixes:
    """Prefix lengths: a caller's group and its network, per address family."""

    ipv4_group: int = 32
    ipv6_group: int = 64
    ipv4_network: int = 24
    ipv6_network: int = 48


@dataclass(frozen=True)
class CallerKeys:
    """What a caller is counted by (in memory only; the store sees `hash_caller`)."""

    group: str
    network: str


UNKNOWN = CallerKeys("unknown", "unknown")


def _masked(address: ipaddress.IPv4Address | ipaddress.IPv6Address, length: int) -> str:
    return str(ipaddress.ip_network((address, length), strict=False))


def caller_keys(client: Hop | None, prefixes: Prefixes) -> CallerKeys:
    """The group and network of a client (`UNKNOWN` when it has no identity)."""
    if client is None:
        return UNKNOWN
    if isinstance(client, Opaque):
        key = f"opaque:{client.text}"
        return CallerKeys(key, key)
    if isinstance(client, ipaddress.IPv4Address):
        return CallerKeys(
            _masked(client, prefixes.ipv4_group), _masked(client, prefixes.ipv4_network)
        )
    return CallerKeys(_masked(client, prefixes.ipv6_group), _masked(client, prefixes.ipv6_network))


def _digest(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:NETWORK_KEY_LEN]


def hash_caller(key: bytes, keys: CallerKeys) -> str:
    """The record's ip_hash: network digest then group digest, 32 hex."""
    return _digest(key, "network:" + keys.network) + _digest(key, "group:" + keys.group)


def network_of(ip_hash: str) -> str:
    """The network part of an ip_hash."""
    return ip_hash[:NETWORK_KEY_LEN]
