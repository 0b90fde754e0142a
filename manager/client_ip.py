"""Which client a request came from: the peer, or the hops its trusted proxies wrote.

The hops (manager/forwarded.py) are read right to left, and only while each one is a
trusted proxy: the first untrusted address is the client. A request that did not come
from a trusted proxy is its peer, whatever headers it carries.

A hop that is not an address (RFC 7239 `unknown`, an obfuscated `_id`, or text no
parser reads) was written by the trusted proxy to its right, so it is that proxy's
word for its client: it is the client's identity, an `Opaque` caller of its own. The
walk stops there. It never goes past it (what lies to its left was written by someone
the proxy did not vouch for) and never falls back to the proxy's own address, which
would put every caller behind that proxy into one group.
"""

from __future__ import annotations

from collections.abc import Sequence

from manager.forwarded import Hop, Opaque, parse_address
from manager.settings import Network


def is_trusted(hop: Hop, nets: Sequence[Network]) -> bool:
    return not isinstance(hop, Opaque) and any(hop in net for net in nets)


def client_of(
    peer: str | None, hops: Sequence[Hop], trusted: Sequence[Network], max_proxies: int = 0
) -> Hop | None:
    """The client: None when the peer itself is not an address (no identity at all).

    `max_proxies` (TRUSTED_PROXY_HOPS; 0 = no bound) is how many trusted proxies stand in
    front of us: past that many, the next hop is the client even if its address is in a
    trusted range (a caller inside the cluster's network, or a load balancer's private
    address), so what it wrote further left is never believed."""
    client: Hop | None = parse_address(peer or "")
    if client is None or not is_trusted(client, trusted):
        return client
    proxies = 1
    for hop in reversed(hops):
        client = hop
        if not is_trusted(client, trusted) or proxies == max_proxies:
            break
        proxies += 1
    return client
