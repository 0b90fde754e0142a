"""Failures as the API server reports them: `Status` objects (kind Status, status
Failure, reason, code, details), as k8s.io/apimachinery pkg/api/errors/errors.go builds
them (NewNotFound, NewAlreadyExists, NewConflict, NewInvalid, NewResourceExpired)."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_object(code: int, message: str, reason: str | None = None, **details: Any) -> Obj:
    """A `Status` object shaped like the API server's."""
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details:
        body["details"] = details
    return body


class ApiError(Exception):
    """An API failure, carried to the HTTP layer as a Status object."""

    def __init__(self, code: int, message: str, reason: str | None = None, **details: Any):
        super().__init__(message)
        self.code = code
        self.status = status_object(code, message, reason, **details)


def not_found(name: str) -> ApiError:
    return ApiError(404, f'secrets "{name}" not found', name=name, kind="secrets")


def invalid(name: str, path: str, message: str) -> ApiError:
    cause = {"reason": "FieldValueInvalid", "message": message, "field": path}
    return ApiError(
        422,
        f'Secret "{name}" is invalid: {path}: {message}',
        name=name,
        kind="Secret",
        causes=[cause],
    )
