"""HTTP Basic authentication for the JSON routes: parsing, roles, failure limits.

The management API (`/api/v1/...`) authenticates an API key (`key:secret`) in a
middleware; the self-service routes authenticate the instance's own credentials
(manager/self_service.py). Both share one limit on failed authentications per caller
group (manager/networks.py): while a group is over it, every attempt from it is
answered 429 before any check, so a right guess cannot be told from a wrong one.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Middleware

from manager.api_errors import ApiError, Handler, too_many, unauthorized
from manager.api_keys import ApiKeyService
from manager.callers import Callers
from manager.metrics import ManagerMetrics, Tier
from manager.rate_limit import RateLimiter
from tenants.api_keys import Role

MANAGEMENT_PREFIX = "/api/v1/"
ADMIN_ONLY_PREFIX = "/api/v1/api_keys"
READ_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class BasicCredentials:
    user: str
    secret: str = field(repr=False)


def parse_basic(header: str | None) -> BasicCredentials | None:
    """`user:secret` of an HTTP Basic header; None when absent or not Basic."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, secret = decoded.partition(":")
    if not sep or not user:
        return None
    return BasicCredentials(user, secret)


def role_allows(role: Role, method: str, path: str) -> bool:
    """Administrators may do anything; viewers may read, except the API keys."""
    if role is Role.ADMINISTRATOR:
        return True
    return method.upper() in READ_METHODS and not path.startswith(ADMIN_ONLY_PREFIX)


def require_basic(request: web.Request) -> BasicCredentials:
    credentials = parse_basic(request.headers.get("Authorization"))
    if credentials is None:
        raise unauthorized(
            "AUTHORIZATION_HEADER_ERROR", "an Authorization header with HTTP Basic is required"
        )
    return credentials


class FailureLimiter:
    """At most `per_minute` failed authentications per caller group (0: unlimited).

    Counted in this process: with N replicas a group may fail N x `per_minute` times a
    minute (README, "Limits"); each failure costs the caller an argon2 verification."""

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        metrics: ManagerMetrics | None = None,
    ) -> None:
        self._buckets = RateLimiter(per_minute, clock)
        self._metrics = metrics or ManagerMetrics()

    def check(self, group: str) -> None:
        wait = self._buckets.wait(group)
        if wait > 0:
            self._metrics.refused(Tier.AUTH_FAILURES)
            raise too_many("too many failed authentications from this address", wait)

    def failed(self, group: str) -> None:
        self._buckets.acquire(group)


def management_auth(keys: ApiKeyService, failures: FailureLimiter, callers: Callers) -> Middleware:
    """The middleware that admits /api/v1/ calls by API key and role."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(MANAGEMENT_PREFIX):
            return await handler(request)
        group = callers.keys(request).group
        failures.check(group)
        credentials = require_basic(request)
        role = await keys.authenticate(credentials.user, credentials.secret)
        if role is None:
            failures.failed(group)
            raise unauthorized("BAD_API_KEY_OR_SECRET", "Check api_key/api_secret")
        if not role_allows(role, request.method, request.path):
            raise ApiError(403, "UNAUTHORIZED_ROLE", f"the {role} role may not do this")
        return await handler(request)

    return middleware
