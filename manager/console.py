"""The web console at `/`: one page, no account, and the static files it loads.

`render_console` is pure (settings and version in, HTML out); the page's scripts and
styles are package data under manager/static/, served from memory with the page's strict
Content-Security-Policy: nothing inline, nothing from another origin, and connections only
to this origin and the deployment's WSS endpoint. The vendored MQTT client
(mqtt.min.js) is rebuilt by scripts/vendor-mqttjs; manager/static/vendor.json records
its version and checksums.
"""

from __future__ import annotations

import hashlib
import html
import importlib.resources
from dataclasses import dataclass

from aiohttp import web

from manager.endpoints import Endpoints
from manager.limits import Row, duration, limit_rows, quota_rows
from manager.rendering import fill, template
from manager.settings import ManagerSettings
from manager.skill import package_version
from manager.snippets import Snippet, connection_snippets, self_service_snippet

STATIC_TYPES = {
    "console.js": "text/javascript",
    "console.css": "text/css",
    "mqtt.min.js": "text/javascript",
    "mqtt.LICENSE.md": "text/markdown",
    "favicon.svg": "image/svg+xml",
}
STATIC_PREFIX = "/static/"
BASE_URL_TOKEN = "<base_url>"  # noqa: S105 - a placeholder the page replaces


def content_security_policy(endpoints: Endpoints) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src 'self' {endpoints.wss_origin}",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ]
    )


def security_headers(endpoints: Endpoints) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(endpoints),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


def _snippet_html(snippet: Snippet) -> str:
    element = f"snippet-{snippet.key}"
    title = html.escape(snippet.title)
    return (
        f'    <h3 id="{element}-title">{title}</h3>\n'
        f'    <pre><code id="{element}" data-snippet aria-labelledby="{element}-title">'
        f"{html.escape(snippet.text)}</code></pre>\n"
        f'    <button type="button" class="copy" data-copy="{element}"'
        f' aria-label="Copy the {title} example">Copy</button>'
    )


def _rows(rows: tuple[Row, ...]) -> str:
    return "\n".join(
        "        <tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in rows
    )


def render_console(settings: ManagerSettings, version: str) -> str:
    snippets = (
        *connection_snippets(settings.endpoints),
        self_service_snippet(BASE_URL_TOKEN),  # the page fills in the address it came from
    )
    quotas = settings.quotas
    values = {
        "host": html.escape(settings.public_host),
        "ttl": html.escape(duration(settings.ttl_seconds)),
        "version": html.escape(version),
        "snippets": "\n".join(_snippet_html(s) for s in snippets),
        "limits": _rows(limit_rows(settings)),
        "quotas": _rows(quota_rows(quotas)),
        "max_sessions": str(quotas.max_sessions),
    }
    return fill(template("console.html"), values)


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'


def load_assets() -> dict[str, Asset]:
    folder = importlib.resources.files("manager") / "static"
    return {name: Asset((folder / name).read_bytes(), kind) for name, kind in STATIC_TYPES.items()}


@dataclass(frozen=True)
class Console:
    page: str
    assets: dict[str, Asset]
    headers: dict[str, str]


CONSOLE: web.AppKey[Console] = web.AppKey("console", Console)


async def get_page(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    return web.Response(
        text=console.page,
        content_type="text/html",
        charset="utf-8",
        headers={**console.headers, "Cache-Control": "no-store"},
    )


async def get_asset(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    asset = console.assets.get(request.match_info["name"])
    if asset is None:
        raise web.HTTPNotFound(text="no such file")
    headers = {**console.headers, "Cache-Control": "no-cache", "ETag": asset.etag}
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, content_type=asset.content_type, headers=headers)


def add_console_routes(app: web.Application, settings: ManagerSettings) -> None:
    """Rendered and loaded once: the settings never change while we run."""
    headers = security_headers(settings.endpoints)
    app[CONSOLE] = Console(render_console(settings, package_version()), load_assets(), headers)
    app.router.add_get("/", get_page)
    app.router.add_get(STATIC_PREFIX + "{name}", get_asset)
