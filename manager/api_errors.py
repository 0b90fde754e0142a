"""The JSON error contract of the management API, the self-service routes and /api-docs.

Every failure on those paths becomes `{"code": "...", "message": "..."}` here and
nowhere else, with EMQX's codes (BAD_REQUEST, NOT_FOUND, ALREADY_EXISTS, CONFLICT,
BAD_API_KEY_OR_SECRET, AUTHORIZATION_HEADER_ERROR, UNAUTHORIZED_ROLE, TOO_MANY_REQUESTS,
INTERNAL_ERROR, SERVICE_UNAVAILABLE, ...). The request deadline is applied here too.
Messages never echo internals; the log says what failed. The plain-text contract of
`POST /v1/instances` (manager/app.py) is untouched: this middleware passes other paths
through.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from manager.instances import BadRequest, TooManyRequests
from manager.rate_limit import retry_after_header
from tenants.errors import (
    AlreadyExists,
    Conflict,
    NotFound,
    StoreError,
    StoreTimeout,
    StoreUnavailable,
)
from tenants.operations import OperationRefused

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

JSON_PREFIXES = ("/api/", "/v1/instances/")
JSON_PATHS = ("/api-docs",)
REALM = 'Basic realm="zero-emqx"'

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "BAD_API_KEY_OR_SECRET",
    403: "UNAUTHORIZED_ROLE",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "BAD_REQUEST",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "TOO_MANY_REQUESTS",
}


class ApiError(Exception):
    """An answer other than success, raised anywhere below the middleware."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, {"WWW-Authenticate": REALM})


def not_found(what: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"{what} not found")


def too_many(message: str, retry_after: float) -> ApiError:
    return ApiError(
        429, "TOO_MANY_REQUESTS", message, {"Retry-After": retry_after_header(retry_after)}
    )


def is_json_path(path: str) -> bool:
    return path.startswith(JSON_PREFIXES) or path in JSON_PATHS


def json_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    response = web.json_response({"code": code, "message": message}, status=status)
    response.headers.update(headers or {})
    response.headers["Cache-Control"] = "no-store"
    return response


def _from_http(exc: web.HTTPException) -> web.Response:
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    message = "request body too large" if exc.status == 413 else exc.reason
    if exc.status == 404:
        message = "Request Path Not Found"
    code = _HTTP_CODES.get(exc.status, "INTERNAL_ERROR" if exc.status >= 500 else "BAD_REQUEST")
    response = json_error(exc.status, code, message, headers)
    if exc.keep_alive is False:  # e.g. a body that did not arrive in time (408)
        response.force_close()
    return response


def json_errors(deadline_seconds: float) -> Middleware:
    """The middleware for JSON paths: deadline, no-store, every failure mapped."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not is_json_path(request.path):
            return await handler(request)
        try:
            async with asyncio.timeout(deadline_seconds):
                response = await handler(request)
        except ApiError as exc:
            return json_error(exc.status, exc.code, exc.message, exc.headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _from_http(exc)
        except (BadRequest, OperationRefused) as exc:
            return json_error(400, "BAD_REQUEST", str(exc))
        except TooManyRequests as exc:
            error = too_many(str(exc), exc.retry_after)
            return json_error(error.status, error.code, error.message, error.headers)
        except NotFound:
            return json_error(404, "NOT_FOUND", "not found")
        except AlreadyExists:
            return json_error(409, "ALREADY_EXISTS", "the name is taken")
        except Conflict as exc:
            log.warning("gave up on a contended update: %s", exc)
            return json_error(409, "CONFLICT", "the record kept changing; try again")
        except (TimeoutError, StoreTimeout) as exc:
            log.warning("request deadline passed: %s %s: %s", request.method, request.path, exc)
            return json_error(503, "SERVICE_UNAVAILABLE", "the request deadline passed")
        except StoreUnavailable as exc:
            log.error("tenant store failed: %s", exc)
            return json_error(503, "SERVICE_UNAVAILABLE", "the tenant store is unavailable")
        except StoreError as exc:
            log.error("tenant store error: %s", exc)
            return json_error(500, "INTERNAL_ERROR", "internal error")
        except Exception:
            log.exception("unexpected error handling %s %s", request.method, request.path)
            return json_error(500, "INTERNAL_ERROR", "internal error")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return middleware
