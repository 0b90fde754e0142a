"""A Kubernetes watch read on its own thread, its events handed to the event loop.

The client's responses block on read; `close()` from the loop shuts the socket's read
side down (urllib3's `shutdown()`), which wakes the blocked read at once.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any

from tenants.errors import StoreUnavailable

Json = dict[str, Any]


class WatchStream:
    """One watch response read line by line on its own thread; events handed to the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, open_stream: Callable[[], Any]) -> None:
        self.opened = False  # set before the first event is handed over
        self._loop = loop
        self._open = open_stream
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._done = loop.create_future()
        self._lock = threading.Lock()
        self._response: Any = None
        self._closing = False
        threading.Thread(target=self._run, name="kube-watch", daemon=True).start()

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> Any:
        kind, payload = await self._queue.get()
        if kind == "event":
            return payload
        if kind == "error":
            raise payload
        raise StopAsyncIteration

    async def close(self) -> None:
        """Wake the reading thread (socket read side shut down) and wait a moment for it."""
        with self._lock:
            self._closing = True
            response = self._response
            if response is not None:
                with suppress(Exception):
                    response.shutdown()
        self._queue.put_nowait(("end", None))
        await asyncio.wait([self._done], timeout=2.0)

    def _run(self) -> None:
        clean = False
        try:
            response = self._open()
            with self._lock:
                self._response = response
                if self._closing:
                    return
            self.opened = True
            pending = b""
            for chunk in _chunks(response):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in filter(None, (raw.strip() for raw in lines)):
                    self._hand_over("event", json.loads(line))
            clean = True
            self._hand_over("end", None)
        except BaseException as exc:  # handed to the loop, never raised on this thread
            self._hand_over("error", exc)
        finally:
            with self._lock:
                response, self._response = self._response, None
            with suppress(Exception):
                if response is not None and clean:
                    response.release_conn()
                elif response is not None:
                    response.close()
            self._call_soon(self._done.set_result, None)

    def _hand_over(self, kind: str, payload: Any) -> None:
        if not self._closing:
            self._call_soon(self._queue.put_nowait, (kind, payload))

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        with suppress(RuntimeError):  # the loop is closed: nobody is listening any more
            self._loop.call_soon_threadsafe(fn, *args)


def _chunks(response: Any) -> Iterator[bytes]:
    if response.chunked and response.supports_chunked_reads():
        yield from response.read_chunked(decode_content=True)
        return
    while chunk := response.read1(65536):
        yield chunk


def watch_event(event: Any) -> tuple[str, Json]:
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        raise StoreUnavailable("the Kubernetes API sent a watch event that is not an object")
    return str(event.get("type", "")), event["object"]
