"""The manager's OpenAPI 3 document: built here, served at /api-docs, committed as
manager/openapi.json (regenerate with `python -m manager.openapi > manager/openapi.json`;
a test checks the committed file equals what is served)."""

from __future__ import annotations

import json
import sys
from typing import Any

from aiohttp import web

from manager.emqx_clients import COUNTERS, EmqxState
from tenants.api_keys import API_KEY_NAME_RE
from tenants.credentials import INSTANCE_ID_RE, SCOPED_USERNAME_RE
from tenants.quotas import DEFAULT_QUOTAS
from tenants.record import STATES, TAG_MAX, TAG_RE

Schema = dict[str, Any]
TIME: Schema = {"type": "string", "format": "date-time", "example": "2026-11-29T03:24:11Z"}
JSON_ERROR_CODES = {
    400: "invalid parameters or body",
    401: "missing, malformed or wrong credentials",
    403: "the key's role may not do this (viewers may only read)",
    404: "no such instance, key or path",
    405: "method not allowed",
    409: "the name is taken, or the record kept changing",
    413: "the body is larger than MAX_BODY_BYTES",
    429: "too many failed authentications from this address",
    500: "internal error",
    503: "the tenant store is unavailable or the request deadline passed",
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: Schema, required: list[str] | None = None) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def _json(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def _json_errors(*codes: int) -> Schema:
    return {str(code): {"$ref": f"#/components/responses/E{code}"} for code in codes}


def _text(description: str) -> Schema:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


ID_PARAM: Schema = {
    "name": "instance_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": INSTANCE_ID_RE.pattern},
}
KEY_PARAM: Schema = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": API_KEY_NAME_RE.pattern},
}
USERNAME_PARAM: Schema = {
    "name": "username",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": SCOPED_USERNAME_RE.pattern},
}
ADMIN: list[Schema] = [{"apiKey": []}]
OWNER: list[Schema] = [{"instanceCredentials": []}]
MANAGEMENT_ERRORS = (400, 401, 403, 404, 405, 413, 429, 500, 503)


def _op(summary: str, responses: Schema, **extra: Any) -> Schema:
    return {"summary": summary, "responses": responses, **extra}


def _limits() -> Schema:
    """Every quota of tenants/quotas.py, typed by its default."""
    types = {bool: "boolean", int: "integer", str: "string"}
    return _obj(
        {
            name: {"type": types[type(value)], "example": value}
            for name, value in DEFAULT_QUOTAS.limits().items()
        }
    )


def _usage() -> Schema:
    used = {"type": "integer", "minimum": 0, "nullable": True}
    limited = _obj({"used": used, "limit": {"type": "integer", "minimum": 1}})
    counter = {"type": "integer", "minimum": 0}
    counters = {
        **_obj({name: counter for name in COUNTERS.values()}, required=[]),
        "nullable": True,
        "description": "EMQX's counters for the namespace (EMQX 6.1.0+; null on 6.0.x,"
        " before the namespace's first session, or when EMQX did not answer)",
    }
    return _obj(
        {
            "emqx": {
                "type": "string",
                "enum": [state.value for state in EmqxState],
                "description": "ok: EMQX answered every read; unreachable: a value it did"
                " not give is null; not_configured: EMQX_API_URL is unset",
            },
            "sessions": limited,
            "retained_messages": limited,
            "counters": counters,
        }
    )


def _schemas() -> Schema:
    endpoint = _obj(
        {"host": {"type": "string"}, "port": {"type": "integer"}, "uri": {"type": "string"}}
    )
    credentials = _obj({"username": {"type": "string"}, "password": {"type": "string"}})
    instance = {
        "instance_id": {"type": "string", "pattern": INSTANCE_ID_RE.pattern},
        "state": {"type": "string", "enum": list(STATES)},
        "created_at": TIME,
        "expires_at": TIME,
        "tag": {"type": "string", "maxLength": TAG_MAX},
    }
    connected = {"type": "integer", "minimum": 0, "nullable": True}
    key = {
        "name": {"type": "string"},
        "role": {"type": "string", "enum": ["administrator", "viewer"]},
        "source": {"type": "string", "enum": ["bootstrap", "api"]},
        "created_at": {**TIME, "nullable": True},
    }
    label = {"type": "string", "minLength": 1, "maxLength": TAG_MAX, "pattern": TAG_RE.pattern}
    credential = {
        "username": {
            "type": "string",
            "pattern": SCOPED_USERNAME_RE.pattern,
            "description": "<instance_id>.<r><7 hex>: r is the rights letter, p publish"
            " only, s subscribe only, x both (8 hex digits: a legacy credential, refused)",
        },
        "label": label,
        "allow_publish": {"type": "boolean"},
        "allow_subscribe": {"type": "boolean"},
        "created_at": TIME,
    }
    credential_list = {"type": "array", "items": _ref("ScopedCredential")}
    meta = {
        "page": {"type": "integer", "minimum": 1},
        "limit": {"type": "integer", "minimum": 1},
        "count": {"type": "integer", "minimum": 0},
        "hasnext": {"type": "boolean"},
    }
    return {
        "Error": _obj({"code": {"type": "string"}, "message": {"type": "string"}}),
        "Instance": _obj(instance),
        "InstanceDetail": _obj(
            {
                **instance,
                "connected_clients": connected,
                "credentials": credential_list,
                "limits": _limits(),
                "usage": _usage(),
            }
        ),
        "InstancePage": _obj(
            {"data": {"type": "array", "items": _ref("Instance")}, "meta": _obj(meta)}
        ),
        "Credentials": _obj(
            {"instance_id": instance["instance_id"], "credentials": credentials, "expires_at": TIME}
        ),
        "CreatedInstance": _obj(
            {
                "instance_id": instance["instance_id"],
                "mqtts": endpoint,
                "wss": endpoint,
                "credentials": credentials,
                "expires_at": TIME,
            }
        ),
        "CreateRequest": _obj(
            {"tag": {"type": "string", "maxLength": TAG_MAX, "pattern": TAG_RE.pattern}}, []
        ),
        "ExpiryRequest": _obj({"expires_at": TIME}),
        "ScopedCredential": _obj(credential),
        "ScopedCredentialList": _obj({"data": credential_list}),
        "NewScopedCredential": _obj(
            {"username": credential["username"], "password": {"type": "string"}, **credential}
        ),
        "ScopedCredentialRequest": _obj(
            {
                "label": label,
                "allow_publish": {
                    "type": "boolean",
                    "default": False,
                    "description": "fixed at creation (the username's rights letter)",
                },
                "allow_subscribe": {
                    "type": "boolean",
                    "default": False,
                    "description": "fixed at creation (the username's rights letter)",
                },
            },
            ["label"],
        ),
        "ApiKey": _obj(key),
        "ApiKeyList": _obj({"data": {"type": "array", "items": _ref("ApiKey")}}),
        "NewApiKey": _obj({**key, "api_key": {"type": "string"}, "api_secret": {"type": "string"}}),
        "ApiKeyRequest": _obj(
            {
                "name": {"type": "string", "pattern": API_KEY_NAME_RE.pattern},
                "role": {"type": "string", "enum": ["administrator", "viewer"]},
            },
            ["name"],
        ),
    }


def _responses() -> Schema:
    responses: Schema = {}
    for code, description in JSON_ERROR_CODES.items():
        response: Schema = {"description": description, "content": _json(_ref("Error"))}
        if code == 401:
            response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        if code == 429:
            response["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
        responses[f"E{code}"] = response
    return responses


def _ok(description: str, schema: str, status: str = "200") -> Schema:
    return {status: {"description": description, "content": _json(_ref(schema))}}


NO_CONTENT: Schema = {"204": {"description": "done"}}


def _paths() -> Schema:
    instance = "/api/v1/instances/{instance_id}"
    own = "/v1/instances/{instance_id}"
    owner_errors = _json_errors(401, 404, 405, 429, 500, 503)
    plain_errors = {
        str(code): _text(text)
        for code, text in {
            400: "invalid JSON (trailing bytes, a duplicate key), unknown fields or an invalid tag",
            405: "method not allowed",
            408: "the body did not arrive in time",
            413: "body too large",
            429: "a limit of the caller's group, its network, or the service",
            500: "internal error",
            502: "the tenant store failed",
            504: "the request deadline passed",
        }.items()
    }
    body = {"required": True, "content": _json(_ref("ExpiryRequest"))}
    key_body = {"required": True, "content": _json(_ref("ApiKeyRequest"))}
    credential_body = {"required": True, "content": _json(_ref("ScopedCredentialRequest"))}
    admin: Schema = {"security": ADMIN}
    query = [
        {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100},
        },
        {"name": "tag", "in": "query", "schema": {"type": "string"}},
        {"name": "state", "in": "query", "schema": {"type": "string", "enum": list(STATES)}},
    ]
    errors = _json_errors(*MANAGEMENT_ERRORS)
    return {
        "/v1/instances": {
            "post": _op(
                "Create an instance (no account; the password is shown once)",
                {**_ok("created", "CreatedInstance", "201"), **plain_errors},
                requestBody={"required": False, "content": _json(_ref("CreateRequest"))},
                security=[],
            )
        },
        "/SKILL.md": {
            "get": _op(
                "This deployment described for an AI agent: endpoint, request, response, "
                "lifecycle, errors, health and connection examples with its real values",
                {
                    "200": {
                        "description": "the skill document (YAML front matter, then Markdown)",
                        "content": {"text/markdown": {"schema": {"type": "string"}}},
                    }
                },
                security=[],
            )
        },
        own: {
            "parameters": [ID_PARAM],
            "get": _op(
                "Your instance: state, expiry, connected clients",
                {**_ok("the instance", "InstanceDetail"), **owner_errors},
                security=OWNER,
            ),
            "delete": _op(
                "Revoke your instance now", {**NO_CONTENT, **owner_errors}, security=OWNER
            ),
        },
        own + "/rotate-credentials": {
            "parameters": [ID_PARAM],
            "post": _op(
                "A new password for your instance (shown once); the old one stops working",
                {**_ok("the new credentials", "Credentials"), **owner_errors},
                security=OWNER,
            ),
        },
        "/api/v1/instances": {
            "get": _op(
                "List instances (paged, oldest first)",
                {**_ok("one page", "InstancePage"), **errors},
                parameters=query,
                **admin,
            )
        },
        instance: {
            "parameters": [ID_PARAM],
            "get": _op(
                "One instance, with its connected clients when EMQX answers",
                {**_ok("the instance", "InstanceDetail"), **errors},
                **admin,
            ),
            "delete": _op("Revoke an instance now", {**NO_CONTENT, **errors}, **admin),
        },
        instance + "/pause": {
            "parameters": [ID_PARAM],
            "post": _op(
                "Pause: refuse connections, kick sessions",
                {**_ok("paused", "Instance"), **errors},
                **admin,
            ),
        },
        instance + "/resume": {
            "parameters": [ID_PARAM],
            "post": _op("Resume", {**_ok("active", "Instance"), **errors}, **admin),
        },
        instance + "/rotate-credentials": {
            "parameters": [ID_PARAM],
            "post": _op(
                "A new password (shown once); sessions on the old one are kicked",
                {**_ok("the new credentials", "Credentials"), **errors},
                **admin,
            ),
        },
        instance + "/expiry": {
            "parameters": [ID_PARAM],
            "put": _op(
                "Move the expiry: after now, at most MAX_TTL_SECONDS after creation",
                {**_ok("the instance", "Instance"), **errors},
                requestBody=body,
                **admin,
            ),
        },
        instance + "/credentials": {
            "parameters": [ID_PARAM],
            "get": _op(
                "The instance's scoped credentials (never passwords or hashes)",
                {**_ok("the credentials", "ScopedCredentialList"), **errors},
                **admin,
            ),
            "post": _op(
                "A scoped credential: username <instance_id>.<r><7 hex>, the same"
                " namespace, publish and/or subscribe rights fixed at creation (the letter r:"
                " p publish only, s subscribe only, x both, enforced by EMQX's ACL); the"
                " password is shown once",
                {**_ok("created", "NewScopedCredential", "201"), **errors},
                requestBody=credential_body,
                **admin,
            ),
        },
        instance + "/credentials/{username}": {
            "parameters": [ID_PARAM, USERNAME_PARAM],
            "delete": _op(
                "Delete a scoped credential: refused at once, its sessions are kicked",
                {**NO_CONTENT, **errors},
                **admin,
            ),
        },
        "/api/v1/api_keys": {
            "get": _op(
                "List API keys (administrators; never secrets)",
                {**_ok("the keys", "ApiKeyList"), **errors},
                **admin,
            ),
            "post": _op(
                "Create an API key (administrators); the secret is shown once",
                {**_ok("created", "NewApiKey", "201"), **errors, **_json_errors(409)},
                requestBody=key_body,
                **admin,
            ),
        },
        "/api/v1/api_keys/{name}": {
            "parameters": [KEY_PARAM],
            "delete": _op("Delete an API key (administrators)", {**NO_CONTENT, **errors}, **admin),
        },
    }


def document() -> Schema:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Zero EMQX manager",
            "version": "1",
            "description": (
                "Disposable, isolated MQTT namespaces. `POST /v1/instances` needs no "
                "account; `/v1/instances/{id}` is managed with the instance's own "
                "credentials; `/api/v1` is the management API (API key and secret as "
                "HTTP Basic, roles administrator and viewer), off unless configured."
            ),
        },
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "basic", "description": "key:secret"},
                "instanceCredentials": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "instance_id:password",
                },
            },
        },
    }


def rendered() -> str:
    """The committed form: indented JSON and a final newline."""
    return json.dumps(document(), indent=2) + "\n"


_RENDERED = rendered()


async def api_docs(request: web.Request) -> web.Response:
    return web.Response(text=_RENDERED, content_type="application/json")


def add_openapi_route(app: web.Application) -> None:
    app.router.add_get("/api-docs", api_docs)


if __name__ == "__main__":
    sys.stdout.write(rendered())
