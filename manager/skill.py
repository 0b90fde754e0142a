"""`GET /SKILL.md`: the agent skill document, rendered for this deployment.

`render_skill` is pure: the settings and the package version in, Markdown out. The
template (manager/templates/skill.md) holds `{{name}}` placeholders; every one must be
filled, so a template and this module cannot drift apart silently.
"""

from __future__ import annotations

import importlib.metadata
import json

from aiohttp import web

from manager.limits import Row, duration, limit_rows, quota_rows
from manager.rendering import fill, template
from manager.settings import ManagerSettings
from manager.snippets import Snippet, connection_snippets, self_service_snippet

PACKAGE = "zero-emqx"


def package_version() -> str:
    return importlib.metadata.version(PACKAGE)


def _snippet_block(snippet: Snippet) -> str:
    return f"### {snippet.title}\n\n```{snippet.language}\n{snippet.text}\n```"


def _table(rows: tuple[Row, ...]) -> str:
    lines = ["| limit | value | past it |", "| --- | --- | --- |"]
    lines += [f"| {name} | {value} | {past} |" for name, value, past in rows]
    return "\n".join(lines)


def _per(value: int, text: str) -> str:
    return text.format(value) if value else "no limit"


def render_skill(settings: ManagerSettings, version: str) -> str:
    e = settings.endpoints
    ttl = duration(settings.ttl_seconds)
    description = (
        f"Get a disposable, isolated MQTT namespace on {e.host} with one HTTP call and no"
        f" account: MQTTS and WebSocket endpoints, a username and a password, valid for {ttl}."
        " Use it when you need a working MQTT broker now: tests, demos, prototypes, agents"
        " talking to each other."
    )
    compatibility = (
        "Any HTTP client to create an instance; any MQTT 3.1.1 or 5 client to use it, over"
        f" TLS ({e.mqtts_uri}) or WebSocket ({e.wss_uri})."
    )
    values = {
        # JSON strings are YAML double-quoted scalars: the front matter always parses.
        "description": json.dumps(description),
        "compatibility": json.dumps(compatibility),
        "version_yaml": json.dumps(version),
        "base_url": settings.public_base_url,
        "host": e.host,
        "mqtts_port": str(e.mqtts_port),
        "mqtts_uri": e.mqtts_uri,
        "wss_port": str(e.wss_port),
        "wss_path": e.wss_path,
        "wss_uri": e.wss_uri,
        "ttl": ttl,
        "max_body_bytes": str(settings.max_body_bytes),
        "per_ip_rate": _per(settings.per_ip_rate, "more than {} a minute"),
        "max_live": _per(settings.max_live_instances, "{} live instances"),
        "deadline": f"{settings.request_deadline_seconds:g} s",
        "auth_failure_rate": (
            f"more than {settings.auth_failure_rate} failed logins a minute"
            if settings.auth_failure_rate
            else "too many failed logins"  # not limited here: never answered
        ),
        "snippets": "\n\n".join(_snippet_block(s) for s in connection_snippets(e)),
        "limits": _table(limit_rows(settings)),
        "quotas": _table(quota_rows(settings.quotas)),
        "max_sessions": str(settings.quotas.max_sessions),
        "self_service": self_service_snippet(settings.public_base_url).text,
    }
    return fill(template("skill.md"), values)


SKILL: web.AppKey[str] = web.AppKey("skill", str)


async def get_skill(request: web.Request) -> web.Response:
    return web.Response(
        text=request.app[SKILL],
        content_type="text/markdown",
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )


def add_skill_route(app: web.Application, settings: ManagerSettings) -> None:
    """Rendered once: the settings are read once and never change while we run."""
    app[SKILL] = render_skill(settings, package_version())
    app.router.add_get("/SKILL.md", get_skill)
