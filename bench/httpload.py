"""A lean HTTP/1.1 keep-alive load generator (closed loop): `--connections` connections,
one request in flight on each, the request bytes encoded once.

Run as `python -m bench.httpload` with a JSON spec on stdin; prints a JSON result
(the same shape as bench.grpcload's: latencies in the window, counts by status class).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Mapping
from typing import Any

from bench.common import pin, self_cpu_seconds


def post_request(host: str, port: int, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Run:
    def __init__(self, request: bytes, warmup: float, duration: float) -> None:
        self.request = request
        start = time.perf_counter()
        self.window_start = start + warmup
        self.window_end = self.window_start + duration
        self.latencies: list[float] = []
        self.counts: dict[str, int] = {}
        self.stopping = False
        self.open = 0
        self.closed = asyncio.Event()


class Connection(asyncio.Protocol):
    def __init__(self, run: Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.started = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.run.open += 1
        self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.open -= 1
        if self.run.open == 0:
            self.run.closed.set()

    def send(self) -> None:
        assert self.transport is not None
        if self.run.stopping:
            self.transport.close()
            return
        self.started = time.perf_counter()
        self.transport.write(self.run.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[: end + 4 + length]
        now = time.perf_counter()
        status = head[0].split(" ", 2)[1]
        run = self.run
        if run.window_start <= now < run.window_end:
            run.latencies.append(now - self.started)
            run.counts[status] = run.counts.get(status, 0) + 1
        if now >= run.window_end:
            run.stopping = True
        self.send()


async def run_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    host, port = spec["host"], int(spec["port"])
    body = json.dumps(spec.get("body", {})).encode()
    run = Run(post_request(host, port, spec["path"], body), spec["warmup"], spec["duration"])
    loop = asyncio.get_running_loop()
    cpu0, wall0 = self_cpu_seconds(), time.perf_counter()
    for _ in range(int(spec["connections"])):
        await loop.create_connection(lambda: Connection(run), host, port)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(run.closed.wait(), spec["warmup"] + spec["duration"] + 30)
    return {
        "window": float(spec["duration"]),
        "latencies": run.latencies,
        "counts": run.counts,
        "cpu": self_cpu_seconds() - cpu0,
        "wall": time.perf_counter() - wall0,
    }


def main() -> None:
    spec = json.loads(sys.stdin.read())
    pin(spec.get("cpus"))
    json.dump(asyncio.run(run_spec(spec)), sys.stdout)


if __name__ == "__main__":
    main()
