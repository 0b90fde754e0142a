"""Which address a request came from: the peer, or X-Forwarded-For behind trusted proxies."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Sequence

from manager.settings import Network


def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, nets: Sequence[Network]
) -> bool:
    return any(address in net for net in nets)


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The caller's address.

    X-Forwarded-For is read right to left, and only while each hop is a trusted
    proxy: the first untrusted address is the caller. A request that did not
    come from a trusted proxy is its peer, whatever headers it carries.
    """
    address = _parse(peer or "")
    if address is None:
        return peer or "unknown"
    if not forwarded_for or not _trusted(address, trusted):
        return str(address)
    for hop in reversed(forwarded_for.split(",")):
        hop_address = _parse(hop)
        if hop_address is None:
            break
        address = hop_address
        if not _trusted(address, trusted):
            break
    return str(address)


def hash_ip(key: bytes, ip: str) -> str:
    """The keyed hash stored on records instead of the address (32 hex: a valid label value)."""
    return hmac.new(key, ip.encode(), hashlib.sha256).hexdigest()[:32]
