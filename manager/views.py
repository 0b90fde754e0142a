"""What the JSON routes show and accept: pure functions between records and bodies.

A view never holds a password hash or the caller's ip hash; a password appears only in
`credentials_body`, the one-time answer of a rotation, and `new_credential_body`, the
one-time answer of a scoped credential's creation; an API key's secret only in
`new_key_body`, the one-time answer of its creation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from manager.api_keys import KeyInfo, NewKey
from manager.emqx_clients import Usage
from manager.instances import BadRequest
from tenants.api_keys import Role
from tenants.quotas import Quotas
from tenants.record import STATES, ScopedCredential, Tenant, format_time, parse_time

DEFAULT_LIMIT = 100
MAX_LIMIT = 10000
Body = dict[str, Any]


def _positive_int(query: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise BadRequest(f"{name} must be an integer from 1 to {maximum}")
    return int(raw)


@dataclass(frozen=True)
class ListQuery:
    """`page`, `limit`, `tag` and `state` of GET /api/v1/instances (others are ignored)."""

    page: int = 1
    limit: int = DEFAULT_LIMIT
    tag: str | None = None
    state: str | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> ListQuery:
        state = query.get("state")
        if state is not None and state not in STATES:
            raise BadRequest(f"state must be one of {', '.join(STATES)}")
        return cls(
            page=_positive_int(query, "page", 1, 2**31 - 1),
            limit=_positive_int(query, "limit", DEFAULT_LIMIT, MAX_LIMIT),
            tag=query.get("tag"),
            state=state,
        )

    def selects(self, tenant: Tenant, now: datetime) -> bool:
        if self.tag is not None and tenant.tag != self.tag:
            return False
        return self.state is None or tenant.state_at(now) == self.state


def instance_view(tenant: Tenant, now: datetime) -> Body:
    return {
        "instance_id": tenant.instance_id,
        "state": tenant.state_at(now),
        "created_at": format_time(tenant.created_at),
        "expires_at": format_time(tenant.expires_at),
        "tag": tenant.tag,
    }


def instance_detail(tenant: Tenant, now: datetime, usage: Usage, quotas: Quotas) -> Body:
    """The instance, its credentials, its limits and what it uses of them."""
    return {
        **instance_view(tenant, now),
        "connected_clients": usage.sessions,
        "credentials": credential_list(tenant)["data"],
        "limits": quotas.limits(),
        "usage": usage_view(usage, quotas),
    }


def usage_view(usage: Usage, quotas: Quotas) -> Body:
    """Current use against the limits; `null` where EMQX did not say (`emqx` tells why)."""
    return {
        "emqx": usage.emqx.value,
        "sessions": {"used": usage.sessions, "limit": quotas.max_sessions},
        "retained_messages": {
            "used": usage.retained_messages,
            "limit": quotas.retained_messages,
        },
        "counters": dict(usage.counters) if usage.counters is not None else None,
    }


def credential_view(tenant: Tenant, credential: ScopedCredential) -> Body:
    """A scoped credential without its hash: username, label, rights, creation time."""
    return {
        "username": tenant.username_of(credential),
        "label": credential.label,
        "allow_publish": credential.allow_publish,
        "allow_subscribe": credential.allow_subscribe,
        "created_at": format_time(credential.created_at),
    }


def credential_list(tenant: Tenant) -> Body:
    return {"data": [credential_view(tenant, c) for c in tenant.credentials]}


def new_credential_body(tenant: Tenant, credential: ScopedCredential, password: str) -> Body:
    """A scoped credential's creation answer: the only time its password is shown."""
    view = credential_view(tenant, credential)
    return {"username": view.pop("username"), "password": password, **view}


def instance_page(tenants: Iterable[Tenant], query: ListQuery, now: datetime) -> Body:
    """One page, in a stable order (created_at, then id), and EMQX's `meta`."""
    chosen = sorted(
        (t for t in tenants if query.selects(t, now)),
        key=lambda t: (t.created_at, t.instance_id),
    )
    start = (query.page - 1) * query.limit
    data = [instance_view(t, now) for t in chosen[start : start + query.limit]]
    meta = {
        "page": query.page,
        "limit": query.limit,
        "count": len(chosen),
        "hasnext": start + query.limit < len(chosen),
    }
    return {"data": data, "meta": meta}


def credentials_body(tenant: Tenant, password: str) -> Body:
    """A rotation's answer: the credentials block of POST /v1/instances, once."""
    return {
        "instance_id": tenant.instance_id,
        "credentials": {"username": tenant.instance_id, "password": password},
        "expires_at": format_time(tenant.expires_at),
    }


def _object(body: object, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}")
    return body


def parse_expiry_body(body: object) -> datetime:
    """`{"expires_at": "<RFC 3339 with a timezone>"}`."""
    text = _object(body, {"expires_at"}).get("expires_at")
    if not isinstance(text, str):
        raise BadRequest("expires_at is required: an RFC 3339 time with a timezone")
    try:
        return parse_time(text)
    except ValueError:
        raise BadRequest("expires_at must be an RFC 3339 time with a timezone") from None


@dataclass(frozen=True)
class CredentialRequest:
    """`{"label": "...", "allow_publish": bool, "allow_subscribe": bool}`; rights default
    to false (tenants.operations.check_credential_request wants at least one)."""

    label: str
    allow_publish: bool
    allow_subscribe: bool

    @classmethod
    def from_json(cls, body: object) -> CredentialRequest:
        fields = _object(body, {"label", "allow_publish", "allow_subscribe"})
        label = fields.get("label")
        if not isinstance(label, str):
            raise BadRequest("label is required: a string")
        rights = [fields.get(name, False) for name in ("allow_publish", "allow_subscribe")]
        if not all(isinstance(right, bool) for right in rights):
            raise BadRequest("allow_publish and allow_subscribe must be true or false")
        return cls(label, rights[0], rights[1])


def parse_key_request(body: object) -> tuple[str, Role]:
    """`{"name": "...", "role": "administrator" | "viewer"}`; the role defaults to viewer."""
    fields = _object(body, {"name", "role"})
    name, role = fields.get("name"), fields.get("role", Role.VIEWER.value)
    if not isinstance(name, str):
        raise BadRequest("name is required")
    if not isinstance(role, str) or role not in {r.value for r in Role}:
        raise BadRequest("role must be administrator or viewer")
    return name, Role(role)


def api_key_view(info: KeyInfo) -> Body:
    created = format_time(info.created_at) if info.created_at is not None else None
    return {
        "name": info.name,
        "role": info.role.value,
        "source": info.source,
        "created_at": created,
    }


def new_key_body(new: NewKey) -> Body:
    """EMQX's answer to a key creation: `api_key` and `api_secret`, the secret once."""
    return {**api_key_view(new.info), "api_key": new.info.name, "api_secret": new.secret}
