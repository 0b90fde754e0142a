"""The HTTP edge over raw sockets: header, body and keep-alive timeouts, the connection cap."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from tenants.local_store import LocalStore
from tests.manager_client import RunningManager, manager_for

SHORT = {
    "HEADER_TIMEOUT_SECONDS": "0.3",
    "BODY_TIMEOUT_SECONDS": "0.3",
    "KEEPALIVE_TIMEOUT_SECONDS": "0.5",
}
BOUND = 10.0  # what "closed" means here: well before this; on unguarded code, never


@contextlib.asynccontextmanager
async def running(tmp_path: Path, env: Mapping[str, str]) -> AsyncIterator[RunningManager]:
    store = LocalStore(tmp_path)
    try:
        async with manager_for(store, env) as m:
            yield m
    finally:
        await store.close()


async def connect(
    m: RunningManager,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = m.url.removeprefix("http://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        async with asyncio.timeout(BOUND):
            while chunk := await reader.read(65536):
                data += chunk
    return data


async def test_a_client_trickling_headers_is_cut(tmp_path: Path) -> None:
    async with running(tmp_path, SHORT) as m:
        reader, writer = await connect(m)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
        await writer.drain()

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for n in range(200):
                    writer.write(b"X-Slow-%d: x\r\n" % n)
                    await writer.drain()
                    await asyncio.sleep(0.05)

        trickler = asyncio.create_task(trickle())
        try:
            assert await closed_by_server(reader) == b""  # cut, never answered
        finally:
            trickler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await trickler
            await close(writer)
        # The server still serves others.
        assert (await m.client.get("/healthz")).status_code == 200


async def test_a_body_that_does_not_arrive_is_408_and_closed(tmp_path: Path) -> None:
    async with running(tmp_path, SHORT) as m:
        reader, writer = await connect(m)
        writer.write(b"POST /v1/instances HTTP/1.1\r\nHost: test\r\nContent-Length: 20\r\n\r\n{}")
        await writer.drain()
        answer = await closed_by_server(reader)
        await close(writer)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert answer.endswith(b"\r\n\r\nthe request body did not arrive in time\n")
        assert len((await m.sync.store.list()).tenants) == 0


async def test_an_idle_keep_alive_connection_is_closed(tmp_path: Path) -> None:
    async with running(tmp_path, SHORT) as m:
        reader, writer = await connect(m)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        await writer.drain()
        answer = await closed_by_server(reader)  # answered, then closed when idle
        await close(writer)
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert answer.endswith(b"ok\n")


async def test_a_slow_request_of_several_on_one_connection_is_still_cut(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, {**SHORT, "KEEPALIVE_TIMEOUT_SECONDS": "30"}) as m:
        reader, writer = await connect(m)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"ok\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # the second request's headers stall
        await writer.drain()
        assert await closed_by_server(reader) == b""
        await close(writer)


async def test_connections_beyond_the_cap_are_closed_at_once(tmp_path: Path) -> None:
    async with running(tmp_path, {"MAX_CONNECTIONS": "2"}) as m:
        # httpx's pool may hold a connection of the harness's own: close it first.
        await m.client.aclose()
        held = [await connect(m) for _ in range(2)]
        reader, writer = await connect(m)
        assert await closed_by_server(reader) == b""
        await close(writer)
        # The admitted ones work; closing one makes room again.
        first_reader, first_writer = held[0]
        first_writer.write(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        assert (await closed_by_server(first_reader)).startswith(b"HTTP/1.1 200 ")
        await close(first_writer)
        for _ in range(100):
            reader, writer = await connect(m)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            answer = await closed_by_server(reader)
            await close(writer)
            if answer:
                break
            await asyncio.sleep(0.05)  # until the server has seen the close
        assert answer.startswith(b"HTTP/1.1 200 ")
        for _, held_writer in held[1:]:
            await close(held_writer)
