"""Parsing X-Forwarded-For and RFC 7239 Forwarded into hops."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from manager.forwarded import (
    BROKEN,
    Hop,
    Opaque,
    forwarded,
    parse_address,
    parse_node,
    x_forwarded_for,
)

V4 = IPv4Address("203.0.113.7")
V6 = IPv6Address("2001:db8::1")


@pytest.mark.parametrize(
    ("text", "hop"),
    [
        ("203.0.113.7", V4),
        (" 203.0.113.7 ", V4),
        ("203.0.113.7:4711", V4),
        ("203.0.113.7:1", V4),
        ("203.0.113.7:65535", V4),
        ("203.0.113.7:_port", V4),  # RFC 7239 obfport
        ("203.0.113.7:_a", V4),
        ("203.0.113.7:_ a", Opaque("203.0.113.7:_ a")),
        ("::ffff:203.0.113.7:80", Opaque("::ffff:203.0.113.7:80")),  # a port needs brackets
        ("2001:db8::1", V6),
        ("[2001:db8::1]", V6),
        ("[2001:db8::1]:4711", V6),
        ("[2001:db8::1]:_p-1.x", V6),
        ("::ffff:203.0.113.7", V4),  # IPv4-mapped: the IPv4 caller
        ("[::ffff:203.0.113.7]:80", V4),
        ("2001:DB8::1", V6),
        ("unknown", Opaque("unknown")),
        ("UNKNOWN", Opaque("unknown")),
        ("_hidden", Opaque("_hidden")),
        ("garbage", Opaque("garbage")),
        ("", Opaque("")),
        ("203.0.113.7:", Opaque("203.0.113.7:")),
        ("203.0.113.7:123456", Opaque("203.0.113.7:123456")),
        ("203.0.113.7:80:80", Opaque("203.0.113.7:80:80")),
        ("203.0.113.7:8a", Opaque("203.0.113.7:8a")),
        ("203.0.113.7:_", Opaque("203.0.113.7:_")),
        ("203.0.113.7:_a b", Opaque("203.0.113.7:_a b")),
        ("203.0.113.7:٣", Opaque("203.0.113.7:٣")),  # a non-ASCII digit is no port
        ("[203.0.113.7]", Opaque("[203.0.113.7]")),  # brackets are for IPv6 only
        ("[203.0.113.7]:80", Opaque("[203.0.113.7]:80")),
        ("[2001:db8::1", Opaque("[2001:db8::1")),
        ("[2001:db8::1]x", Opaque("[2001:db8::1]x")),
        ("[2001:db8::1]:", Opaque("[2001:db8::1]:")),
        ("[2001:db8::1]:99999x", Opaque("[2001:db8::1]:99999x")),
        ("[garbage]", Opaque("[garbage]")),
        ("[::1%eth0]", Opaque("[::1%eth0]")),
        ("fe80::1%eth0", Opaque("fe80::1%eth0")),  # a zone names the proxy's link
        ("2001:db8::1:80", IPv6Address("2001:db8::1:80")),  # bare IPv6 has no port
        ("::1:80x", Opaque("::1:80x")),
    ],
)
def test_parse_node(text: str, hop: Hop) -> None:
    assert parse_node(text) == hop


def test_opaque_hops_are_bounded() -> None:
    assert parse_node("x" * 1000) == Opaque("x" * 64)


def test_parse_address_is_strict() -> None:
    assert parse_address("203.0.113.7") == V4
    assert parse_address("[2001:db8::1]") is None
    assert parse_address("203.0.113.7:80") is None
    assert parse_address("") is None


def test_every_x_forwarded_for_line_is_one_list() -> None:
    # RFC 9110 §5.3: several lines are one comma-separated list, in order.
    lines = ["198.51.100.1, 10.0.0.1", "10.0.0.2"]
    assert x_forwarded_for(lines) == [
        IPv4Address("198.51.100.1"),
        IPv4Address("10.0.0.1"),
        IPv4Address("10.0.0.2"),
    ]


def test_x_forwarded_for_without_spaces_and_with_empty_elements() -> None:
    assert x_forwarded_for(["198.51.100.1,10.0.0.1"]) == [
        IPv4Address("198.51.100.1"),
        IPv4Address("10.0.0.1"),
    ]
    assert x_forwarded_for([",198.51.100.1, ,", ""]) == [IPv4Address("198.51.100.1")]
    assert x_forwarded_for([]) == []


def test_x_forwarded_for_with_ports_and_brackets() -> None:
    assert x_forwarded_for(["[2001:db8::1]:4711,203.0.113.7:80, garbage"]) == [
        V6,
        V4,
        Opaque("garbage"),
    ]


def test_forwarded_for_values() -> None:
    line = 'for=203.0.113.7;proto=https, For="[2001:db8::1]:4711";by=_proxy, for=unknown'
    assert forwarded([line]) == [V4, V6, Opaque("unknown")]


def test_forwarded_lines_are_one_list() -> None:
    assert forwarded(["for=203.0.113.7", "for=_hidden"]) == [V4, Opaque("_hidden")]


def test_forwarded_quoted_strings_may_hold_separators_and_escapes() -> None:
    assert forwarded(['for="_a,b;c";proto=http']) == [Opaque("_a,b;c")]
    assert forwarded(['for="\\"quoted\\""']) == [Opaque('"quoted"')]
    assert forwarded(['for="203.0.113\\.7"']) == [V4]
    assert forwarded(['proto="a,b";for=203.0.113.7, for=2001:db8::1']) == [V4, V6]
    # An escaped quote does not end the quoted string, in the list as in the value.
    assert forwarded(['for="_a\\",b"']) == [Opaque('_a",b')]
    assert forwarded(['for="_a\\"b", for=203.0.113.7']) == [Opaque('_a"b'), V4]
    assert forwarded(['for="_x=y"']) == [Opaque("_x=y")]


@pytest.mark.parametrize(
    "element",
    [
        "proto=https",  # no for=
        "for",  # not a pair
        "for=203.0.113.7;for=198.51.100.1",  # for= twice
        'for="203.0.113.7',  # unterminated quote
        'for="203.0.113.7"x',
        'for="a"b"',
        'for=a"b',
        "for=a\\b",
        'for="a\\"',  # escape at the end
        'for="',
        "for=203.0.113.7;;proto=http",
    ],
)
def test_broken_forwarded_elements_have_no_identity(element: str) -> None:
    assert forwarded([element]) == [BROKEN]


def test_forwarded_skips_empty_elements_and_spaces() -> None:
    assert forwarded([" , for=203.0.113.7 ; proto=http ,"]) == [V4]
    assert forwarded([",for=203.0.113.7"]) == [V4]
    assert forwarded(["FOR = 203.0.113.7"]) == [V4]
