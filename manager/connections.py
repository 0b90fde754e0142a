"""Open HTTP connections, bounded in number and in how long a request's headers take.

aiohttp closes idle connections after its keep-alive timeout (KEEPALIVE_TIMEOUT_SECONDS,
passed to the runner), but has no header timeout: a client sending one header line
every few seconds would hold its connection, and in `zero-emqx serve` the event loop it
shares with the ExHook, for as long as the keep-alive allows. `ConnectionGuard` wraps
the server's protocol factory (`GuardedSite`):

- at most MAX_CONNECTIONS connections are open; one beyond it is closed at once;
- from the first byte of a request until its handler starts (the guard's middleware)
  at most HEADER_TIMEOUT_SECONDS pass, or the connection is aborted.

The body has its own timeout where it is read (manager/bodies.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

log = logging.getLogger(__name__)


class _Guarded(asyncio.Protocol):
    """One connection: aiohttp's protocol inside, the guard's timer around it."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.in_request = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if not self._guard.admit(transport, self):
            transport.abort()
            return
        self._transport = transport
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        if not self.in_request and self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._guard.header_timeout, self._headers_too_slow)
        self._inner.data_received(data)

    def request_started(self) -> None:
        self.in_request = True
        self._cancel_timer()

    def request_finished(self) -> None:
        self.in_request = False

    def _headers_too_slow(self) -> None:
        self._timer = None
        if self._transport is not None and not self.in_request:
            log.info("closing a connection whose request headers did not arrive in time")
            self._transport.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._transport is not None else None

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if self._transport is None:
            return
        self._guard.release(self._transport)
        self._transport = None
        self._inner.connection_lost(exc)


class ConnectionGuard:
    """Counts open connections and times request headers; see the module docstring."""

    def __init__(self, *, max_connections: int, header_timeout: float) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self._open: dict[asyncio.BaseTransport, _Guarded] = {}
        self.refused = 0

    @property
    def open(self) -> int:
        return len(self._open)

    def admit(self, transport: asyncio.BaseTransport, connection: _Guarded) -> bool:
        if len(self._open) >= self.max_connections:
            self.refused += 1
            log.warning(
                "refusing a connection: MAX_CONNECTIONS (%d) are open", self.max_connections
            )
            return False
        self._open[transport] = connection
        return True

    def release(self, transport: asyncio.BaseTransport) -> None:
        self._open.pop(transport, None)

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(self, inner())

    def middleware(self) -> Middleware:
        """Marks a request's headers as arrived while its handler runs."""

        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            connection = self._open.get(request.transport) if request.transport else None
            if connection is None:
                return await handler(request)
            connection.request_started()
            try:
                return await handler(request)
            finally:
                connection.request_finished()

        return middleware


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections go through a ConnectionGuard."""

    def __init__(self, runner: web.BaseRunner, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(runner, **kwargs)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard.factory(server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        if self._server.sockets:
            self._bound_port = self._server.sockets[0].getsockname()[1]
