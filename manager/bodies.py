"""Reading a request's JSON body within a size limit."""

from __future__ import annotations

import json

from aiohttp import web

from manager.instances import BadRequest

NO_BODY = object()


async def read_json(request: web.Request, limit: int) -> object:
    """The decoded body, NO_BODY when it is empty; 413 past `limit` (not read whole)."""
    length = request.content_length
    if length is not None and length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(raw))
    if not raw.strip():
        return NO_BODY
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None
