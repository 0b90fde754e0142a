"""A lean gRPC load generator that plays EMQX's ExHook client: raw HTTP/2 on asyncio.

Why not grpcio or h2load: a grpcio client costs about as much CPU per call as the
server under test, so on 2 cores it would be the bottleneck; h2load is fast but sends
one request body, and we want each call to carry its own tenant's credentials. Here
every request is pre-encoded once (HPACK literals without indexing, so the header
block is stateless and reusable; gRPC framing: 1 byte compressed=0, 4-byte big-endian
length, the `ClientAuthenticateRequest`), and a call costs two frames out and three in.

Like EMQX: a few HTTP/2 connections (EMQX's `pool_size`), many calls in flight on each,
`grpc-timeout: 5S` (EMQX's request_timeout). Answers are classified by their bytes:
`allow` (STOP_AND_RETURN true), `deny` (STOP_AND_RETURN false), `error` (no message:
a non-OK grpc-status, RST_STREAM or GOAWAY), `other`.

Modes: `closed` (a fixed number of calls in flight), `open` (a fixed rate; latency is
measured from the intended send time, so a stalled server cannot hide its queue) and
`storm` (every credential sent at once; wait up to `storm_wait` seconds).

Run as `python -m bench.grpcload` with a JSON spec on stdin; prints a JSON result.
`run_load` runs several such processes and merges their results.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.common import ROOT, pin, read_credentials, self_cpu_seconds
from exhook.wire import exhook_pb2 as pb

AUTHENTICATE_PATH = "/emqx.exhook.v3.HookProvider/OnClientAuthenticate"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
RECEIVE_WINDOW = 1 << 30
_FRAME = struct.Struct(">I B I")  # (length << 8 | type), flags, stream id; see _frame()

ALLOW_BYTES = pb.ValuedResponse(
    type=pb.ValuedResponse.STOP_AND_RETURN, bool_result=True
).SerializeToString()
DENY_BYTES = pb.ValuedResponse(
    type=pb.ValuedResponse.STOP_AND_RETURN, bool_result=False
).SerializeToString()


# -- encoding ----------------------------------------------------------------------------


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes((kind, flags))
        + struct.pack(">I", stream)
        + payload
    )


def _hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _hpack_str(text: str) -> bytes:
    raw = text.encode()
    return _hpack_int(len(raw), 7, 0) + raw


def _literal(name_index: int, value: str) -> bytes:
    """Literal header field without indexing, name from the static table."""
    return _hpack_int(name_index, 4, 0) + _hpack_str(value)


def _literal_new(name: str, value: str) -> bytes:
    return b"\x00" + _hpack_str(name) + _hpack_str(value)


def header_block(path: str, authority: str, timeout: str = "5S") -> bytes:
    """The request's HPACK block: static-table indices and literals, never indexed."""
    return b"".join(
        (
            b"\x83",  # :method POST (static 3)
            b"\x86",  # :scheme http (static 6)
            _literal(4, path),  # :path
            _literal(1, authority),  # :authority
            _literal(31, "application/grpc"),  # content-type
            _literal_new("te", "trailers"),
            _literal_new("grpc-timeout", timeout),
            _literal(58, "bench-emqx-exhook"),  # user-agent
        )
    )


def authenticate_message(instance_id: str, password: str, client_suffix: str = "x") -> bytes:
    """A length-prefixed gRPC message as EMQX 6.2 fills it for a CONNECT."""
    request = pb.ClientAuthenticateRequest(
        clientinfo=pb.ClientInfo(
            node="emqx@127.0.0.1",
            clientid=f"{instance_id}-{client_suffix}",
            username=instance_id,
            password=password,
            peerhost="127.0.0.1",
            sockport=8883,
            peerport=50000,
            protocol="mqtt",
            mountpoint="",
        ),
        result=False,
        meta=pb.RequestMeta(
            node="emqx@127.0.0.1", version="6.2.2", sysdescr="EMQX", cluster_name="emqxcl"
        ),
    ).SerializeToString()
    return b"\x00" + struct.pack(">I", len(request)) + request


def classify(message: bytes) -> str:
    if not message:
        return "error"
    body = message[5:]
    if body == ALLOW_BYTES:
        return "allow"
    if body == DENY_BYTES:
        return "deny"
    return "other"


# -- the connection ------------------------------------------------------------------------


class Load:
    """Shared by the connections of one process: what to send, what was measured."""

    def __init__(self, messages: Sequence[bytes], *, repeat: bool) -> None:
        self.messages = messages
        self.repeat = repeat
        self.next_index = 0
        self.window_start = float("inf")
        self.window_end = float("inf")
        self.latencies: list[float] = []
        self.counts: dict[str, int] = {"allow": 0, "deny": 0, "error": 0, "other": 0}
        self.all_counts: dict[str, int] = {"allow": 0, "deny": 0, "error": 0, "other": 0}
        self.in_flight = 0
        self.sent = 0
        self.exhausted = False
        self.stopping = False
        self.idle = asyncio.Event()
        self.finished = asyncio.Event()  # every message sent (no repeat) and answered
        self.errors: dict[str, int] = {}  # grpc-status / RST_STREAM code -> count (decode)

    def take(self) -> bytes | None:
        if self.next_index >= len(self.messages):
            if not self.repeat or not self.messages:
                self.exhausted = True
                if self.in_flight == 0:
                    self.finished.set()
                return None
            self.next_index = 0
        message = self.messages[self.next_index]
        self.next_index += 1
        return message

    def done(self, started: float, finished: float, kind: str) -> None:
        self.in_flight -= 1
        self.all_counts[kind] += 1
        if self.window_start <= finished < self.window_end:
            self.latencies.append(finished - started)
            self.counts[kind] += 1
        if self.in_flight == 0:
            self.idle.set()
            if self.exhausted:
                self.finished.set()


class H2Connection(asyncio.Protocol):
    def __init__(
        self, load: Load, headers: bytes, *, closed_loop_depth: int, decode: bool = False
    ) -> None:
        self.load = load
        self.decoder: Any = None
        if decode:  # only to name errors: hpack comes with the h2 dev dependency
            import hpack

            self.decoder = hpack.Decoder()
        self.headers = headers
        self.depth = closed_loop_depth  # calls kept in flight here (closed loop); 0: open
        self.transport: asyncio.Transport | None = None
        self.ready = asyncio.get_running_loop().create_future()
        self.lost = False
        self.next_stream = 1
        self.streams: dict[int, list[Any]] = {}  # id -> [started, bytearray message]
        self.buffer = bytearray()
        self.out: list[bytes] = []
        self.send_window = 65535
        self.max_streams = 1 << 31
        self.pending: list[tuple[bytes, float]] = []
        self.received = 0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        settings = struct.pack(">HI", 0x2, 0) + struct.pack(">HI", 0x4, RECEIVE_WINDOW)
        transport.write(
            PREFACE
            + _frame(SETTINGS, 0, 0, settings)
            + _frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", RECEIVE_WINDOW - 65535))
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        now = time.perf_counter()
        for started, _ in self.streams.values():
            self.load.done(started, now, "error")
        self.streams.clear()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("connection lost"))

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        offset, size = 0, len(buf)
        now = time.perf_counter()
        while size - offset >= 9:
            length = (buf[offset] << 16) | (buf[offset + 1] << 8) | buf[offset + 2]
            end = offset + 9 + length
            if end > size:
                break
            kind, flags = buf[offset + 3], buf[offset + 4]
            stream = int.from_bytes(buf[offset + 5 : offset + 9], "big") & 0x7FFFFFFF
            if kind == DATA:
                state = self.streams.get(stream)
                if state is not None:
                    state[1] += buf[offset + 9 : end]
                self.received += length
                if flags & END_STREAM:
                    self._end(stream, now)
            elif kind == HEADERS:
                if self.decoder is not None:
                    self._decode(stream, bytes(buf[offset + 9 : end]))
                if flags & END_STREAM:
                    self._end(stream, now)
            elif kind == RST_STREAM:
                code = int.from_bytes(buf[offset + 9 : end], "big")
                if stream in self.streams:
                    name = f"rst_stream {code}"
                    self.load.errors[name] = self.load.errors.get(name, 0) + 1
                self._end(stream, now)
            elif kind == SETTINGS:
                if not flags & ACK:
                    self._settings(bytes(buf[offset + 9 : end]))
                    self.out.append(_frame(SETTINGS, ACK, 0, b""))
                    if not self.ready.done():
                        self.ready.set_result(None)
            elif kind == PING:
                if not flags & ACK:
                    self.out.append(_frame(PING, ACK, 0, bytes(buf[offset + 9 : end])))
            elif kind == WINDOW_UPDATE:
                if stream == 0:
                    self.send_window += int.from_bytes(buf[offset + 9 : end], "big") & 0x7FFFFFFF
                    self._flush_pending()
            elif kind == GOAWAY:
                self.lost = True
            offset = end
        del buf[:offset]
        if self.received > RECEIVE_WINDOW // 2:
            self.out.append(_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self.received)))
            self.received = 0
        self.flush()

    def _decode(self, stream: int, block: bytes) -> None:
        fields = dict(self.decoder.decode(block))
        status = fields.get("grpc-status")
        if status not in (None, "0") and stream in self.streams:
            name = f"grpc-status {status} {fields.get('grpc-message', '')}".strip()
            self.load.errors[name] = self.load.errors.get(name, 0) + 1

    def _settings(self, payload: bytes) -> None:
        for i in range(0, len(payload) - 5, 6):
            ident, value = struct.unpack_from(">HI", payload, i)
            if ident == 0x3:
                self.max_streams = value

    def _end(self, stream: int, now: float) -> None:
        state = self.streams.pop(stream, None)
        if state is None:
            return
        self.load.done(state[0], now, classify(bytes(state[1])))
        if self.depth and not self.load.stopping:
            message = self.load.take()
            if message is not None:
                self.send(message, time.perf_counter())

    # sending
    def send(self, message: bytes, started: float) -> None:
        """Queue one call (written on the next flush); `started` is its latency origin."""
        if self.lost:
            self.load.in_flight += 1
            self.load.done(started, time.perf_counter(), "error")
            return
        data_len = len(message)
        if data_len > self.send_window or len(self.streams) >= self.max_streams:
            self.pending.append((message, started))
            self.load.in_flight += 1
            return
        self._write_call(message, started)
        self.load.in_flight += 1

    def _write_call(self, message: bytes, started: float) -> None:
        stream = self.next_stream
        self.next_stream += 2
        self.send_window -= len(message)
        self.streams[stream] = [started, bytearray()]
        self.load.sent += 1
        self.out.append(_frame(HEADERS, END_HEADERS, stream, self.headers))
        self.out.append(_frame(DATA, END_STREAM, stream, message))

    def _flush_pending(self) -> None:
        while self.pending:
            message, started = self.pending[0]
            if len(message) > self.send_window or len(self.streams) >= self.max_streams:
                break
            self.pending.pop(0)
            self._write_call(message, started)

    def flush(self) -> None:
        if self.out and self.transport is not None and not self.lost:
            self.transport.write(b"".join(self.out))
        self.out.clear()


# -- driving -------------------------------------------------------------------------------


async def _connect(spec: Mapping[str, Any], load: Load, depth: int) -> list[H2Connection]:
    loop = asyncio.get_running_loop()
    headers = header_block(spec.get("path", AUTHENTICATE_PATH), f"{spec['host']}:{spec['port']}")
    conns = []
    for _ in range(int(spec["connections"])):
        _, proto = await loop.create_connection(
            lambda: H2Connection(
                load, headers, closed_loop_depth=depth, decode=bool(spec.get("decode"))
            ),
            spec["host"],
            int(spec["port"]),
        )
        conns.append(proto)
    await asyncio.wait_for(asyncio.gather(*(c.ready for c in conns)), 10)
    return conns


async def _closed(spec: Mapping[str, Any], load: Load) -> float:
    conns_n = int(spec["connections"])
    concurrency = max(conns_n, int(spec["concurrency"]))
    depth = max(1, concurrency // conns_n)
    conns = await _connect(spec, load, depth)
    start = time.perf_counter()
    load.window_start = start + float(spec["warmup"])
    load.window_end = load.window_start + float(spec["duration"])
    for conn in conns:
        for _ in range(depth):
            message = load.take()
            if message is None:
                break
            conn.send(message, time.perf_counter())
        conn.flush()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(load.finished.wait(), load.window_end - time.perf_counter())
    load.stopping = True
    end = min(time.perf_counter(), load.window_end)
    await _drain(load, 10.0)
    _close(conns)
    return max(1e-9, end - min(load.window_start, end))


async def _open(spec: Mapping[str, Any], load: Load) -> float:
    conns = await _connect(spec, load, 0)
    rate = float(spec["rate"])
    start = time.perf_counter()
    load.window_start = start + float(spec["warmup"])
    load.window_end = load.window_start + float(spec["duration"])
    sent, turn = 0, 0
    while True:
        now = time.perf_counter()
        if now >= load.window_end:
            break
        due = int((now - start) * rate) - sent
        for _ in range(due):
            message = load.take()
            if message is None:
                break
            conns[turn % len(conns)].send(message, start + sent / rate)
            sent += 1
            turn += 1
        for conn in conns:
            conn.flush()
        await asyncio.sleep(0.0005)
    load.stopping = True
    await _drain(load, 10.0)
    _close(conns)
    return float(spec["duration"])


async def _storm(spec: Mapping[str, Any], load: Load) -> float:
    conns = await _connect(spec, load, 0)
    start = time.perf_counter()
    load.window_start = start
    load.window_end = float("inf")
    turn = 0
    while (message := load.take()) is not None:
        conns[turn % len(conns)].send(message, start)
        turn += 1
    for conn in conns:
        conn.flush()
    await _drain(load, float(spec.get("storm_wait", 10.0)))
    elapsed = time.perf_counter() - start
    unanswered = load.in_flight
    load.counts["unanswered"] = unanswered
    _close(conns)
    return elapsed


async def _drain(load: Load, timeout: float) -> None:
    if load.in_flight == 0:
        return
    load.idle.clear()
    deadline = time.perf_counter() + timeout
    while load.in_flight > 0 and time.perf_counter() < deadline:
        load.idle.clear()
        try:
            await asyncio.wait_for(load.idle.wait(), max(0.01, deadline - time.perf_counter()))
        except TimeoutError:
            break


def _close(conns: Sequence[H2Connection]) -> None:
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()


async def run_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    creds = read_credentials(Path(spec["credentials"]))
    procs, index = int(spec.get("procs", 1)), int(spec.get("proc_index", 0))
    creds = creds[index::procs]
    messages = [authenticate_message(c.instance_id, c.password) for c in creds]
    load = Load(messages, repeat=bool(spec.get("repeat", True)))
    cpu0, wall0 = self_cpu_seconds(), time.perf_counter()
    mode = spec["mode"]
    if mode == "closed":
        window = await _closed(spec, load)
    elif mode == "open":
        window = await _open(spec, load)
    elif mode == "storm":
        window = await _storm(spec, load)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return {
        "window": window,
        "latencies": load.latencies,
        "counts": load.counts,
        "all_counts": load.all_counts,
        "sent": load.sent,
        "errors": load.errors,
        "cpu": self_cpu_seconds() - cpu0,
        "wall": time.perf_counter() - wall0,
    }


def main() -> None:
    spec = json.loads(sys.stdin.read())
    pin(spec.get("cpus"))
    result = asyncio.run(run_spec(spec))
    json.dump(result, sys.stdout)


def run_load(spec: Mapping[str, Any], *, procs: int = 1, timeout: float = 300) -> dict[str, Any]:
    """Run the generator in `procs` processes (each gets 1/procs of the connections,
    concurrency, rate and credentials) and merge their results."""
    children = []
    for index in range(procs):
        part = dict(spec)
        part.update(procs=procs, proc_index=index)
        part["connections"] = max(1, int(spec["connections"]) // procs)
        if "concurrency" in spec:
            part["concurrency"] = max(1, int(spec["concurrency"]) // procs)
        if "rate" in spec:
            part["rate"] = float(spec["rate"]) / procs
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.grpcload"],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        assert children[-1].stdin is not None
        children[-1].stdin.write(json.dumps(part))
        children[-1].stdin.close()
    results = []
    for child in children:
        assert child.stdout is not None
        assert child.stderr is not None
        out = child.stdout.read()
        err = child.stderr.read()
        if child.wait(timeout) != 0:
            raise RuntimeError(f"load generator failed: {err[-2000:]}")
        results.append(json.loads(out))
    merged: dict[str, Any] = {
        "window": max(r["window"] for r in results),
        "latencies": [x for r in results for x in r["latencies"]],
        "counts": {},
        "all_counts": {},
        "errors": {},
        "sent": sum(r["sent"] for r in results),
        "cpu": sum(r["cpu"] for r in results),
        "wall": max(r["wall"] for r in results),
        "procs": procs,
    }
    for key in ("counts", "all_counts", "errors"):
        for r in results:
            for name, value in r[key].items():
                merged[key][name] = merged[key].get(name, 0) + value
    return merged


if __name__ == "__main__":
    main()
