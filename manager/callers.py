"""Who is calling: from an aiohttp request to the keys every per-caller limit counts by.

The client is read from the peer and the configured proxy header (PROXY_HEADER:
`X-Forwarded-For`, or RFC 7239 `Forwarded`; the other one is ignored, whoever sent
it, so a client cannot pick the header its proxy does not rewrite), then grouped by
network (manager/networks.py). A forwarding header from a peer that is not a trusted
proxy is ignored and logged: once per peer (up to WARNED_PEERS remembered), and at
most once per WARN_INTERVAL overall, so the log cannot be flooded.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import hdrs, web

from manager.client_ip import client_of, is_trusted
from manager.forwarded import Hop, forwarded, parse_address, x_forwarded_for
from manager.networks import CallerKeys, caller_keys, hash_caller
from manager.settings import ManagerSettings
from tenants.errors import StoreError

log = logging.getLogger(__name__)

WARNED_PEERS = 1024
WARN_INTERVAL = 10.0
FORWARDING_HEADERS = (hdrs.X_FORWARDED_FOR, hdrs.FORWARDED)


class UntrustedForwardingWarner:
    """Logs forwarding headers seen from untrusted peers, once per peer, rate-limited."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._warned: OrderedDict[str, None] = OrderedDict()
        self._last = float("-inf")

    def seen(self, peer: str, header: str) -> None:
        if peer in self._warned:
            self._warned.move_to_end(peer)
            return
        now = self._clock()
        if now - self._last < WARN_INTERVAL:
            return
        self._last = now
        self._warned[peer] = None
        while len(self._warned) > WARNED_PEERS:
            self._warned.popitem(last=False)
        log.warning(
            "ignoring %s from %s: it is not in TRUSTED_PROXIES, so the header does not "
            "name the caller (behind a proxy, every caller counts as the proxy: add the "
            "proxy's addresses to TRUSTED_PROXIES)",
            header,
            peer,
        )


class Callers:
    """The caller of a request: its keys and the hash a record stores of them."""

    def __init__(self, settings: ManagerSettings, warner: UntrustedForwardingWarner) -> None:
        self._settings = settings
        self._warner = warner
        self._header = hdrs.FORWARDED if settings.proxy_header == "forwarded" else None

    def client(self, request: web.Request) -> Hop | None:
        trusted = self._settings.trusted_proxies
        peer = request.remote
        address = parse_address(peer or "")
        if address is None or not is_trusted(address, trusted):
            for name in FORWARDING_HEADERS:
                if name in request.headers:
                    self._warner.seen(str(address or peer), name)
                    break
            return address
        if self._header is None:
            hops = x_forwarded_for(request.headers.getall(hdrs.X_FORWARDED_FOR, ()))
        else:
            hops = forwarded(request.headers.getall(hdrs.FORWARDED, ()))
        return client_of(peer, hops, trusted, self._settings.trusted_proxy_hops)

    def keys(self, request: web.Request) -> CallerKeys:
        return caller_keys(self.client(request), self._settings.prefixes)

    def hash(self, keys: CallerKeys) -> str:
        key = self._settings.ip_hash_key
        if key is None:
            raise StoreError("IP_HASH_KEY is not configured")
        return hash_caller(key, keys)


CALLERS: web.AppKey[Callers] = web.AppKey("callers", Callers)
