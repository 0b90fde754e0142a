"""Reading a request's JSON body: whole, within a size limit and a time limit.

The body is read to its end whatever its framing (Content-Length, chunked, split over
any number of TCP segments): past `limit` bytes it is 413 without reading further; a
body that does not arrive within `timeout` seconds is 408 and the connection closed.
It must be exactly one JSON value: trailing bytes, duplicate object keys and the
non-JSON constants NaN and Infinity are 400.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from manager.instances import BadRequest

NO_BODY = object()


async def read_body(request: web.Request, limit: int) -> bytes:
    """Every byte of the body; 413 once more than `limit` arrived (or were announced)."""
    length = request.content_length
    if length is not None and length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        chunks.append(chunk)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise BadRequest(f"request body has the key {json.dumps(key)} twice")
        obj[key] = value
    return obj


def _no_constant(name: str) -> object:
    raise BadRequest(f"request body is not valid JSON ({name} is not JSON)")


def parse_json(raw: bytes) -> object:
    """One JSON value (surrounding whitespace allowed); NO_BODY when there is none."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request body is not valid JSON") from None
    if not text.strip():
        return NO_BODY
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    except ValueError:  # json.JSONDecodeError: also "Extra data" after the value
        raise BadRequest("request body is not valid JSON") from None


async def read_json(request: web.Request, limit: int, timeout: float) -> object:
    """The decoded body, NO_BODY when empty; 413 past `limit`, 408 after `timeout`."""
    try:
        async with asyncio.timeout(timeout):
            raw = await read_body(request, limit)
    except TimeoutError:
        refused = web.HTTPRequestTimeout(text="the request body did not arrive in time")
        refused.force_close()
        raise refused from None
    return parse_json(raw)
