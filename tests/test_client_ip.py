"""The client behind trusted proxies: the right-to-left walk over the hops."""

from __future__ import annotations

import ipaddress

from manager.client_ip import client_of, is_trusted
from manager.forwarded import Address, Hop, Opaque, forwarded, x_forwarded_for

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


def client(peer: str | None, *lines: str) -> Hop | None:
    return client_of(peer, x_forwarded_for(lines), PROXIES)


def ip(text: str) -> Address:
    return ipaddress.ip_address(text)


def test_read_right_to_left_until_the_first_untrusted_hop() -> None:
    assert client("10.1.1.1", "1.2.3.4, 5.6.7.8, 10.2.2.2") == ip("5.6.7.8")
    assert client("10.1.1.1", "1.2.3.4,5.6.7.8,10.2.2.2") == ip("5.6.7.8")


def test_an_untrusted_peer_is_the_client_whatever_it_sends() -> None:
    assert client("9.9.9.9", "1.2.3.4") == ip("9.9.9.9")
    assert client("9.9.9.9") == ip("9.9.9.9")


def test_a_trusted_peer_without_a_header_is_the_client() -> None:
    assert client("10.1.1.1") == ip("10.1.1.1")


def test_every_hop_trusted_gives_the_leftmost() -> None:
    assert client("10.1.1.1", "10.3.3.3, 10.2.2.2") == ip("10.3.3.3")


def test_ipv4_mapped_peer_is_its_ipv4_address() -> None:
    assert client("::ffff:10.1.1.1", "1.2.3.4") == ip("1.2.3.4")
    assert client("::ffff:9.9.9.9", "1.2.3.4") == ip("9.9.9.9")


def test_a_bracketed_ipv6_hop_with_a_port_is_read() -> None:
    assert client("10.1.1.1", "[2001:db8::7]:4711") == ip("2001:db8::7")
    assert client("fd00::1", "[fd00::2]:80, [2001:db8::7]:4711") == ip("2001:db8::7")


def test_an_ipv4_hop_with_a_port_does_not_stop_the_walk() -> None:
    assert client("10.1.1.1", "198.51.100.1, 10.2.2.2:3128") == ip("198.51.100.1")


def test_every_header_line_counts_the_client_forged_one_too() -> None:
    # HAProxy `option forwardfor` adds a line: the forged first line is not the client.
    assert client("10.1.1.1", "6.6.6.6", "198.51.100.1") == ip("198.51.100.1")


def test_an_unparseable_hop_is_the_identity_not_the_proxy() -> None:
    # The trusted proxy 10.2.2.2 wrote "garbage" for its client: that is the client,
    # neither the proxy (every caller would be one) nor what lies left of it (forgeable).
    assert client("10.1.1.1", "1.2.3.4, garbage, 10.2.2.2") == Opaque("garbage")
    assert client("10.1.1.1", "1.2.3.4, unknown") == Opaque("unknown")
    # Left of an untrusted client nothing counts, parseable or not.
    assert client("10.1.1.1", "garbage, 5.6.7.8, 10.2.2.2") == ip("5.6.7.8")


def test_a_peer_that_is_not_an_address_has_no_identity() -> None:
    assert client(None, "1.2.3.4") is None
    assert client("", "1.2.3.4") is None
    assert client("garbage", "1.2.3.4") is None


def test_forwarded_with_the_same_rule() -> None:
    hops = forwarded(['for=1.2.3.4, for="[2001:db8::7]:80";proto=https, for=10.2.2.2'])
    assert client_of("10.1.1.1", hops, PROXIES) == ip("2001:db8::7")
    assert client_of("9.9.9.9", hops, PROXIES) == ip("9.9.9.9")
    assert client_of("10.1.1.1", forwarded(["for=_hidden"]), PROXIES) == Opaque("_hidden")


def test_opaque_hops_are_never_trusted() -> None:
    assert not is_trusted(Opaque("10.0.0.1"), PROXIES)
    assert is_trusted(ip("10.0.0.1"), PROXIES)
    assert not is_trusted(ip("11.0.0.1"), PROXIES)
    assert not is_trusted(ip("10.0.0.1"), ())


def test_the_hop_bound_stops_the_walk_inside_a_trusted_range() -> None:
    """One proxy (TRUSTED_PROXY_HOPS=1): the hop it wrote is the caller even when its
    address is private, so what a caller inside the network forged further left is not."""
    hops = x_forwarded_for(["6.6.6.6, 10.9.9.9, 10.2.2.2"])
    assert client_of("10.1.1.1", hops, PROXIES, 1) == ip("10.2.2.2")
    assert client_of("10.1.1.1", hops, PROXIES, 2) == ip("10.9.9.9")
    assert client_of("10.1.1.1", hops, PROXIES, 3) == ip("6.6.6.6")
    assert client_of("10.1.1.1", hops, PROXIES, 0) == ip("6.6.6.6")  # no bound
    # The bound never makes an untrusted hop a proxy, nor an untrusted peer.
    assert client_of("10.1.1.1", x_forwarded_for(["6.6.6.6, 5.5.5.5"]), PROXIES, 3) == ip("5.5.5.5")
    assert client_of("9.9.9.9", hops, PROXIES, 1) == ip("9.9.9.9")
    assert client_of("10.1.1.1", (), PROXIES, 1) == ip("10.1.1.1")
