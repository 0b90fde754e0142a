"""Parsing the hops proxies write: `X-Forwarded-For` and RFC 7239 `Forwarded: for=`.

Pure functions from header lines to hops, left (the first client) to right (the
proxy nearest to us). Every line of a header is part of one list (RFC 9110 §5.3), so a
proxy that appends its own line (HAProxy `option forwardfor`) is read like one that
appends to the existing line. Empty list elements are ignored (RFC 9110 §5.6.1).

A hop is an address (`203.0.113.7`, `203.0.113.7:4711`, `2001:db8::1`,
`[2001:db8::1]:4711`; IPv4-mapped IPv6 is its IPv4 address) or, when it is not one, an
`Opaque` text: RFC 7239's `unknown` and obfuscated identifiers (`_hidden`), or anything
a proxy wrote that is not an address. manager/client_ip.py decides what they mean.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
OPAQUE_MAX = 64  # an opaque hop is kept to this many characters


@dataclass(frozen=True)
class Opaque:
    """A hop that names the client by something other than an address."""

    text: str


Hop = Address | Opaque


def parse_address(text: str) -> Address | None:
    """An IPv4 or IPv6 address without port, brackets or zone; IPv4-mapped -> IPv4."""
    if "%" in text:  # a zone (fe80::1%eth0) is local to the proxy: not an identity
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_port(text: str) -> bool:
    return 1 <= len(text) <= 5 and text.isascii() and text.isdigit()


def _is_obfuscated(text: str) -> bool:
    """RFC 7239 §6.3 obfnode / obfport: "_" 1*( ALPHA / DIGIT / "." / "_" / "-" )."""
    rest = text[1:]
    return (
        text.startswith("_")
        and bool(rest)
        and rest.isascii()
        and all(c.isalnum() or c in "._-" for c in rest)
    )


def parse_node(text: str) -> Hop:
    """One hop: an address with an optional port, or the Opaque text it is."""
    text = text.strip()
    if text.startswith("["):
        inner, sep, after = text[1:].partition("]")
        port_ok = not after or (after[0] == ":" and _port_ok(after[1:]))
        address = parse_address(inner) if sep and port_ok and ":" in inner else None
        return _opaque(text) if address is None else address
    address = parse_address(text)
    if address is not None:
        return address
    host, sep, port = text.partition(":")
    v4 = parse_address(host) if sep and _port_ok(port) else None
    return v4 if isinstance(v4, ipaddress.IPv4Address) else _opaque(text)


def _port_ok(text: str) -> bool:
    return _is_port(text) or _is_obfuscated(text)


def _opaque(text: str) -> Opaque:
    return Opaque(text[:OPAQUE_MAX].lower())


def _elements(lines: Iterable[str]) -> Iterator[str]:
    for line in lines:
        for element in line.split(","):
            if element.strip():
                yield element


def x_forwarded_for(lines: Iterable[str]) -> list[Hop]:
    """The hops of every `X-Forwarded-For` line, in order."""
    return [parse_node(element) for element in _elements(lines)]


def _split_quoted(text: str, separator: str) -> Iterator[str]:
    """`text` split at `separator` outside quoted strings (RFC 9110 §5.6.4)."""
    start, quoted, escaped = 0, False, False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            yield text[start:i]
            start = i + 1
    yield text[start:]


def _unquote(value: str) -> str | None:
    """A token as is; a quoted string without its quotes and escapes; None if broken."""
    if not value.startswith('"'):
        return None if '"' in value or "\\" in value else value
    if len(value) < 2 or not value.endswith('"'):
        return None
    out, escaped = [], False
    for char in value[1:-1]:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            return None
        else:
            out.append(char)
    return None if escaped else "".join(out)


BROKEN = Opaque("")  # a Forwarded element without a readable for=: no identity


def _for_of(element: str) -> Hop:
    """The `for=` of one forwarded-element; BROKEN when missing, repeated or malformed."""
    found: Hop | None = None
    for pair in _split_quoted(element, ";"):
        name, sep, raw = pair.strip().partition("=")
        if not sep:
            return BROKEN
        if name.strip().lower() != "for":
            continue
        value = _unquote(raw.strip())
        if value is None or found is not None:
            return BROKEN
        found = parse_node(value)
    return BROKEN if found is None else found


def forwarded(lines: Iterable[str]) -> list[Hop]:
    """The `for=` hop of each element of every `Forwarded` line, in order."""
    hops = []
    for line in lines:
        for element in _split_quoted(line, ","):
            if element.strip():
                hops.append(_for_of(element))
    return hops
