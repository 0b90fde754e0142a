"""Request bodies read whole, over a raw socket: framing, segments, limits, strict JSON."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Sequence
from pathlib import Path

import pytest

from manager.bodies import NO_BODY, parse_json
from manager.instances import BadRequest
from tenants.local_store import LocalStore
from tests.manager_client import RunningManager, manager_for

LIMITS = {"PER_IP_RATE": "0", "PER_IP_MAX_LIVE": "0", "PER_NETWORK_MAX_LIVE": "0"}


async def exchange(m: RunningManager, pieces: Sequence[bytes]) -> tuple[int, bytes]:
    """Send `pieces` as separate TCP segments (draining between them); the status and body."""
    host, port = m.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)  # let the server read what came so far (not a race)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return status, await reader.readexactly(length)
    finally:
        writer.close()
        await writer.wait_closed()


def post(headers: str) -> bytes:
    return (
        f"POST /v1/instances HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}\r\n"
    ).encode()


def chunked(*chunks: bytes) -> list[bytes]:
    return [b"%x\r\n%s\r\n" % (len(c), c) for c in chunks] + [b"0\r\n\r\n"]


@pytest.fixture
async def running(tmp_path: Path) -> object:
    store = LocalStore(tmp_path)
    try:
        async with manager_for(store, LIMITS) as m:
            yield m
    finally:
        await store.close()


async def test_a_body_split_across_segments_is_read_whole(running: RunningManager) -> None:
    body = b'{"tag": "split-body"}'
    pieces = [post(f"Content-Length: {len(body)}\r\n"), body[:3], body[3:11], body[11:]]
    status, answer = await exchange(running, pieces)
    assert status == 201, answer
    assert b'"instance_id"' in answer


async def test_a_chunked_body_in_pieces_is_read_whole(running: RunningManager) -> None:
    status, answer = await exchange(
        running, [post("Transfer-Encoding: chunked\r\n"), *chunked(b'{"tag"', b': "c"}')]
    )
    assert status == 201, answer


async def test_trailing_bytes_after_the_value_are_refused(running: RunningManager) -> None:
    body = b"{} junk"
    status, answer = await exchange(
        running, [post(f"Content-Length: {len(body)}\r\n"), body[:2], body[2:]]
    )
    assert status == 400 and b"JSON" in answer
    status, _ = await exchange(
        running, [post("Transfer-Encoding: chunked\r\n"), *chunked(b"{}", b"{}")]
    )
    assert status == 400
    assert len((await running.sync.store.list()).tenants) == 0


async def test_a_chunked_body_past_the_limit_is_413(running: RunningManager) -> None:
    limit = running.settings.max_body_bytes
    pieces = chunked(b"{}", b" " * limit)  # the first piece alone is valid JSON
    status, answer = await exchange(running, [post("Transfer-Encoding: chunked\r\n"), *pieces])
    assert status == 413, answer
    assert len((await running.sync.store.list()).tenants) == 0


async def test_a_body_of_exactly_the_limit_is_read(running: RunningManager) -> None:
    limit = running.settings.max_body_bytes
    body = b"{}" + b" " * (limit - 2)
    status, _ = await exchange(running, [post("Transfer-Encoding: chunked\r\n"), *chunked(body)])
    assert status == 201


async def test_a_length_of_exactly_the_limit_is_read(running: RunningManager) -> None:
    limit = running.settings.max_body_bytes
    body = b"{}" + b" " * (limit - 2)
    status, _ = await exchange(running, [post(f"Content-Length: {limit}\r\n"), body])
    assert status == 201


async def test_an_announced_length_past_the_limit_is_413_unread(running: RunningManager) -> None:
    limit = running.settings.max_body_bytes
    status, _ = await exchange(running, [post(f"Content-Length: {limit + 1}\r\n")])
    assert status == 413


async def test_duplicate_keys_are_refused(running: RunningManager) -> None:
    body = b'{"tag": "a", "tag": "b"}'
    status, answer = await exchange(running, [post(f"Content-Length: {len(body)}\r\n"), body])
    assert status == 400 and b"twice" in answer


async def test_a_compressed_body_is_not_inflated(running: RunningManager) -> None:
    body = gzip.compress(b'{"tag": "' + b"a" * 100000 + b'"}')  # inflates past the limit
    assert len(body) < running.settings.max_body_bytes
    headers = f"Content-Length: {len(body)}\r\nContent-Encoding: gzip\r\n"
    status, answer = await exchange(running, [post(headers), body])
    assert status == 400 and b"JSON" in answer
    assert len((await running.sync.store.list()).tenants) == 0


def refusal(raw: bytes) -> str:
    with pytest.raises(BadRequest) as caught:
        parse_json(raw)
    return str(caught.value)


def test_parse_json_is_strict() -> None:
    assert parse_json(b"") is NO_BODY
    assert parse_json(b" \r\n\t") is NO_BODY
    assert parse_json(b' {"a": [1, {"b": null}]} \n') == {"a": [1, {"b": None}]}
    assert parse_json(b'{"a": {"x": 1}, "b": {"x": 2}}') == {"a": {"x": 1}, "b": {"x": 2}}
    assert parse_json('{"tag": "é"}'.encode()) == {"tag": "é"}
    for bad in (b"{}{}", b"{} x", b"[1] 2", b"{", b"\xff{}"):
        assert refusal(bad) == "request body is not valid JSON"
    assert refusal(b'{"a": 1, "a": 1}') == 'request body has the key "a" twice'
    assert refusal(b'{"o": {"k": 1, "k": 2}}') == 'request body has the key "k" twice'
    assert refusal(b"NaN") == "request body is not valid JSON (NaN is not JSON)"
    assert refusal(b"[Infinity]") == "request body is not valid JSON (Infinity is not JSON)"
    assert refusal(b'{"a": -Infinity}') == "request body is not valid JSON (-Infinity is not JSON)"
    assert refusal(b"[" * 100000 + b"]" * 100000) == "request body is nested too deeply"
