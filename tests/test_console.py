"""The console page and its files, as served: CSP, package data, the vendored mqtt.js.

The page in a real browser is tests/test_console_browser.py.
"""

from __future__ import annotations

import fnmatch
import hashlib
import html
import json
import re
import tomllib
from pathlib import Path

import pytest

from manager.console import STATIC_TYPES, content_security_policy, render_console
from manager.limits import limit_rows, quota_rows
from manager.settings import ManagerSettings
from manager.skill import package_version
from manager.snippets import connection_snippets, self_service_snippet
from tenants.local_store import LocalStore
from tests.manager_client import manager_for

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "manager" / "static"
VENDOR = json.loads((STATIC / "vendor.json").read_text())


def test_vendored_mqttjs_is_the_pinned_release() -> None:
    bundle = (STATIC / "mqtt.min.js").read_bytes()
    assert hashlib.sha256(bundle).hexdigest() == VENDOR["sha256"], (
        "manager/static/mqtt.min.js is not the recorded build: run scripts/vendor-mqttjs"
    )
    assert f'version:"{VENDOR["version"]}"'.encode() in bundle
    assert re.fullmatch(r"\d+\.\d+\.\d+", VENDOR["version"]), "pin an exact version"
    assert VENDOR["integrity"].startswith("sha512-")
    assert (STATIC / "mqtt.LICENSE.md").read_text().startswith("The MIT License")
    script = ROOT / "scripts" / "vendor-mqttjs"
    assert script.stat().st_mode & 0o111 and "npm pack" in script.read_text()


def test_every_template_and_static_file_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["manager"]
    manager = ROOT / "manager"
    for folder in ("templates", "static"):
        for path in (manager / folder).iterdir():
            relative = path.relative_to(manager).as_posix()
            assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative
    assert set(STATIC_TYPES) <= {p.name for p in STATIC.iterdir()}


def _settings(**env: str) -> ManagerSettings:
    return ManagerSettings.from_environ({"PUBLIC_HOST": "mqtt.example.org", **env})


def test_page_holds_nothing_inline_and_loads_only_its_own_files() -> None:
    page = render_console(_settings(), "1.2.3")
    assert "{{" not in page
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "an inline script"
    assert "<style" not in page and " style=" not in page
    assert not re.search(r"\son[a-z]+=", page), "an inline event handler"
    for url in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert not re.match(r"[a-z]+:|//", url) or url.startswith("#"), url
    scripts = re.findall(r'<script src="([^"]+)"', page)
    assert scripts == ["static/mqtt.min.js", "static/console.js"]


def test_page_shows_the_skill_snippets_and_the_limits() -> None:
    settings = _settings(
        TTL_SECONDS="3600", PER_IP_RATE="3", WSS_PORT="443", WSS_PATH="/ws", QUOTA_MAX_SESSIONS="4"
    )
    page = render_console(settings, "1.2.3")
    codes = [
        html.unescape(c)
        for c in re.findall(r"<code id=\"snippet-[^\"]+\"[^>]*>(.*?)</code>", page, re.DOTALL)
    ]
    expected = [s.text for s in connection_snippets(settings.endpoints)]
    assert codes == [*expected, self_service_snippet("<base_url>").text]
    assert "wss://mqtt.example.org:443/ws" in codes[-2]
    for row in (*limit_rows(settings), *quota_rows(settings.quotas)):
        assert "".join(f"<td>{html.escape(cell)}</td>" for cell in row) in page
    assert "valid for 1 hour." in " ".join(page.split())
    assert "<td>live MQTT sessions per instance (all its credentials)</td><td>4</td>" in page


def test_console_script_keeps_the_password_in_memory_only() -> None:
    script = (STATIC / "console.js").read_text()
    for leak in (
        "localStorage",
        "sessionStorage",
        "document.cookie",
        "console.",
        "innerHTML",
        "location.hash",
        "history.",
        "indexedDB",
    ):
        assert leak not in script, leak


@pytest.mark.parametrize(
    ("env", "wss_origin"),
    [
        ({}, "wss://mqtt.example.org:8084"),
        ({"WSS_SCHEME": "ws", "WSS_PORT": "9"}, "ws://mqtt.example.org:9"),
    ],
)
def test_content_security_policy_allows_only_self_and_the_wss_endpoint(
    env: dict[str, str], wss_origin: str
) -> None:
    policy = dict(
        d.split(" ", 1) for d in content_security_policy(_settings(**env).endpoints).split("; ")
    )
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["connect-src"] == f"'self' {wss_origin}"
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    assert "unsafe" not in " ".join(policy.values())


async def test_served_page_and_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data")
    try:
        async with manager_for(store, {"PUBLIC_HOST": "mqtt.example.org"}) as m:
            page = await m.client.get("/")
            assert page.status_code == 200
            assert page.headers["Content-Type"] == "text/html; charset=utf-8"
            assert page.headers["Cache-Control"] == "no-store"
            policy = content_security_policy(m.settings.endpoints)
            assert page.headers["Content-Security-Policy"] == policy
            assert page.headers["X-Content-Type-Options"] == "nosniff"
            assert page.text == render_console(m.settings, package_version())
            for name, kind in STATIC_TYPES.items():
                served = await m.client.get(f"/static/{name}")
                assert served.status_code == 200, name
                assert served.headers["Content-Type"].split(";")[0] == kind
                assert served.content == (STATIC / name).read_bytes()
                assert served.headers["Content-Security-Policy"] == policy
                again = await m.client.get(
                    f"/static/{name}", headers={"If-None-Match": served.headers["ETag"]}
                )
                assert again.status_code == 304 and again.content == b""
            for missing in ("vendor.json", "..%2Fsettings.py", "nothing.js"):
                assert (await m.client.get(f"/static/{missing}")).status_code == 404
    finally:
        await store.close()
