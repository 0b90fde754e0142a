"""The web console in a real headless browser (Debian's Chromium driven by Playwright).

A person creates a namespace, sees its credentials, connects over WebSocket to a real
MQTT broker from the page and receives their own message, rotates the password and
deletes the namespace. The broker is aedes (tests/broker/, installed by scripts/bootstrap)
on loopback; it admits a CONNECT only when the manager's self-service route accepts its
username and password, as EMQX asks the ExHook in production. Against a real EMQX wired
to an ExHook on the same store, set `ZERO_EMQX_E2E_WS_URL` (`wss://host:8084/mqtt`; with
`ZERO_EMQX_E2E_WS_INSECURE=1` to accept a self-signed certificate) and the store variables
of tests/e2e/test_emqx_e2e.py: the same test then uses EMQX instead of aedes.

`ZERO_EMQX_SCREENSHOT_DIR=docs` (see scripts/console-screenshots) saves the page before
and after creating a namespace, for the README.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from tenants.local_store import LocalStore
from tenants.settings import StoreSettings
from tenants.store import TenantStore
from tests.manager_client import RunningManager, manager_for

# A dev dependency: without it the module skips, except in CI, where it must be there.
playwright_api = (
    importlib.import_module("playwright.async_api")
    if os.environ.get("CI")
    else pytest.importorskip("playwright.async_api")
)
expect = playwright_api.expect

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parents[1]
BROKER_DIR = ROOT / "tests" / "broker"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
E2E_WS_URL = os.environ.get("ZERO_EMQX_E2E_WS_URL", "")
SCREENSHOT_DIR = os.environ.get("ZERO_EMQX_SCREENSHOT_DIR", "")
WAIT_MS = 20_000  # the longest wait for a condition; a pass never waits this long
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1100, "height": 800}


def _missing(what: str) -> None:
    """Absent tools fail in CI (scripts/bootstrap installs them) and skip elsewhere."""
    message = f"{what} is missing: run scripts/bootstrap"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Broker:
    """Where the page's MQTT client connects, and how the manager must describe it."""

    env: dict[str, str]
    process: subprocess.Popen[str] | None = None

    def admit_for(self, manager_url: str) -> None:
        """Tell aedes which manager checks CONNECT credentials from now on."""
        if self.process is not None and self.process.stdin is not None:
            self.process.stdin.write(manager_url + "\n")
            self.process.stdin.flush()


def _read_port(process: subprocess.Popen[str]) -> int:
    """The broker's first line, read on a thread so a broker that never answers fails."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(30)
    if not lines or not lines[0]:
        process.kill()
        raise RuntimeError("the aedes broker did not start")
    return int(json.loads(lines[0])["port"])


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    if E2E_WS_URL:
        url = urlsplit(E2E_WS_URL)
        scheme = url.scheme
        default_port = 443 if scheme == "wss" else 80
        yield Broker(
            {
                "PUBLIC_HOST": url.hostname or "localhost",
                "WSS_SCHEME": scheme,
                "WSS_PORT": str(url.port or default_port),
                "WSS_PATH": url.path or "/mqtt",
            }
        )
        return
    node = shutil.which("node")
    if node is None or not (BROKER_DIR / "node_modules" / "aedes").is_dir():
        _missing("node or the test broker (tests/broker/node_modules)")
    assert node is not None
    process = subprocess.Popen(
        [node, str(BROKER_DIR / "ws_broker.js"), "/mqtt"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = _read_port(process)
        env = {"PUBLIC_HOST": "127.0.0.1", "WSS_SCHEME": "ws", "WSS_PORT": str(port)}
        yield Broker(env, process)
    finally:
        assert process.stdin is not None
        process.stdin.close()  # the broker exits when its standard input closes
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        _missing("Chromium (/usr/bin/chromium)")
    async with playwright_api.async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@contextlib.asynccontextmanager
async def e2e_or_local_store(tmp_path: Path) -> AsyncIterator[TenantStore]:
    if E2E_WS_URL:
        from tenants.stores import open_store

        store: TenantStore = open_store(StoreSettings.from_environ())
    else:
        store = LocalStore(tmp_path / "data")
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def console_for(
    broker: Broker, tmp_path: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[tuple[RunningManager, TenantStore]]:
    open_limits = {"PER_IP_RATE": "0", "PER_IP_MAX_LIVE": "0", "AUTH_FAILURE_RATE": "0"}
    async with (
        e2e_or_local_store(tmp_path) as store,
        manager_for(store, {**open_limits, **broker.env, **(env or {})}) as m,
    ):
        broker.admit_for(m.url)
        yield m, store


@dataclass
class Watched:
    """What a page did that a person never sees: errors, requests, storage."""

    errors: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def page_on(browser: Any, url: str, **options: Any) -> AsyncIterator[tuple[Any, Watched]]:
    insecure = os.environ.get("ZERO_EMQX_E2E_WS_INSECURE") == "1"
    context = await browser.new_context(ignore_https_errors=insecure, **options)
    watched = Watched()
    page = await context.new_page()

    def on_console(message: Any) -> None:
        if message.type == "error":
            watched.errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda e: watched.errors.append(str(e)))
    page.on("request", lambda r: watched.urls.append(r.url))
    try:
        await page.goto(url + "/")
        await expect(page.locator("body")).to_have_attribute("data-ready", "true")
        yield page, watched
    finally:
        await context.close()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def text_of(page: Any, selector: str) -> str:
    return str(await page.locator(selector).text_content())


async def screenshot(page: Any, name: str) -> None:
    """With ZERO_EMQX_SCREENSHOT_DIR: the whole page on a laptop-sized screen, saved."""
    if not SCREENSHOT_DIR:
        return
    size = page.viewport_size
    await page.set_viewport_size(LAPTOP)
    await page.screenshot(path=str(Path(SCREENSHOT_DIR) / name), full_page=True)
    await page.set_viewport_size(size)


async def publish_and_receive(page: Any, payload: str) -> None:
    await page.get_by_label("Message", exact=True).fill(payload)
    await page.get_by_role("button", name="Publish").click()
    log = page.get_by_role("log")
    await expect(log.get_by_text(payload, exact=True)).to_be_visible(timeout=WAIT_MS)


async def test_create_connect_receive_rotate_delete(
    browser: Any, broker: Broker, tmp_path: Path
) -> None:
    async with (
        console_for(broker, tmp_path) as (m, store),
        page_on(browser, m.url, viewport=PHONE) as (page, watched),
    ):
        await screenshot(page, "console-before.png")
        await expect(page.locator("#instance")).to_be_hidden()

        async with page.expect_response("**/v1/instances") as created_info:
            await page.get_by_role("button", name="Create a namespace").click()
        answer = await (await created_info.value).json()
        username, password = answer["credentials"]["username"], answer["credentials"]["password"]

        # the credentials, once, with the warning, copy buttons and the expiry
        await expect(page.locator("#username")).to_have_text(username)
        await expect(page.locator("#password")).to_have_text(password)
        await expect(page.get_by_role("alert")).to_contain_text("shown once")
        await expect(page.locator("#wss-uri")).to_have_text(answer["wss"]["uri"])
        await expect(page.locator("#mqtts-uri")).to_have_text(answer["mqtts"]["uri"])
        await expect(page.locator("#expires-at")).to_have_attribute(
            "datetime", answer["expires_at"]
        )
        await expect(page.locator("#countdown")).to_have_text(re.compile(r"^\(in 6 d 23 h"))
        await expect(page.get_by_role("button", name="Copy the password")).to_be_visible()
        await expect(page.locator("#instance-title")).to_be_focused()

        # the snippets are SKILL.md's, with this namespace's values in place
        skill = (await m.client.get("/SKILL.md")).text
        mqttx = await text_of(page, "#snippet-mqttx")
        filled = mqttx.replace(username, "<instance_id>").replace(password, "<password>")
        assert filled in skill and username in mqttx and password in mqttx
        own_calls = await text_of(page, "#snippet-self-service")
        assert f"{m.url}/v1/instances/$U/rotate-credentials" in own_calls
        assert f"U='{username}' P='{password}'" in own_calls

        # a live MQTT console: connect over WebSocket, subscribe, publish, receive
        await page.get_by_role("button", name="Connect", exact=True).click()
        status = page.locator("#mqtt-status")
        await expect(status).to_have_text(re.compile("^Connected"), timeout=WAIT_MS)
        await page.get_by_label("Topic filter").fill("console/#")
        await page.get_by_role("button", name="Subscribe").click()
        await expect(status).to_have_text("Subscribed to console/#.", timeout=WAIT_MS)
        await page.get_by_label("Topic", exact=True).fill("console/hello")
        await publish_and_receive(page, "first message")
        await expect(page.get_by_role("log")).to_contain_text("console/hello")

        await page.get_by_role("button", name="Show usage").click()
        usage = page.locator("#usage")
        await expect(usage).to_contain_text("active")
        await expect(usage).to_contain_text(re.compile(r"Live sessions(unknown \(at most|\d+ of )"))
        await screenshot(page, "console-after.png")

        # the password is in the page's memory only
        kept = await page.evaluate(
            "() => JSON.stringify([localStorage, sessionStorage, document.cookie, location.href])"
        )
        assert password not in kept and username not in kept

        # rotate: a new password, the old one refused, the console reconnects with the new
        async with page.expect_response("**/rotate-credentials") as rotated_info:
            await page.get_by_role("button", name="New password").click()
        rotated = await (await rotated_info.value).json()
        new_password = rotated["credentials"]["password"]
        assert new_password != password
        await expect(page.locator("#password")).to_have_text(new_password)
        await expect(page.locator("#manage-status")).to_contain_text("old one no longer works")
        await expect(page.get_by_role("alert")).to_contain_text("shown once")
        own = f"/v1/instances/{username}"
        assert (await m.client.get(own, headers=basic(username, password))).status_code == 401
        await expect(status).to_have_text(re.compile("^Connected"), timeout=WAIT_MS)
        await page.get_by_role("button", name="Subscribe").click()
        await expect(status).to_have_text("Subscribed to console/#.", timeout=WAIT_MS)
        await publish_and_receive(page, "after rotation")

        # delete: gone from the store, and from the page
        page.once("dialog", lambda dialog: dialog.accept())
        await page.get_by_role("button", name="Delete the namespace").click()
        await expect(page.locator("#create-status")).to_contain_text("was deleted")
        await expect(page.locator("#instance")).to_be_hidden()
        assert await store.get(username) is None
        assert new_password not in await page.content()

        assert watched.errors == []
        assert all(u.startswith(m.url + "/") for u in watched.urls), watched.urls


async def test_refusals_are_said_in_words(browser: Any, broker: Broker, tmp_path: Path) -> None:
    async with (
        console_for(broker, tmp_path, {"PER_IP_MAX_LIVE": "1"}) as (m, _),
        page_on(browser, m.url) as (page, _),
    ):
        status = page.locator("#create-status")
        await page.get_by_role("button", name="Create a namespace").click()
        await expect(status).to_have_text("Your namespace is ready.")
        await page.get_by_role("button", name="Create a namespace").click()
        await expect(status).to_have_text(
            "Too many requests (this address has the maximum number of live instances)."
            " Try again in 7 days."
        )
        await expect(page.locator("#username")).not_to_be_empty()  # the first one stays

        await page.get_by_label("Tag").fill("not a tag!")
        await page.get_by_role("button", name="Create a namespace").click()
        await expect(status).to_contain_text("The request was refused (400): tag must be")

        async def proxy_fails(route: Any) -> None:
            await route.fulfill(status=502, body="bad gateway", content_type="text/plain")

        await page.route("**/v1/instances", proxy_fails)
        await page.get_by_label("Tag").fill("")
        await page.get_by_role("button", name="Create a namespace").click()
        await expect(status).to_have_text(
            "The service cannot reach its storage right now. Try again in a few seconds."
        )
        await expect(status).to_have_class(re.compile("error"))


async def test_keyboard_and_phone_screen(browser: Any, broker: Broker, tmp_path: Path) -> None:
    async with (
        console_for(broker, tmp_path) as (m, _),
        page_on(browser, m.url, viewport=PHONE) as (page, watched),
    ):
        await page.get_by_label("Tag").focus()
        await page.keyboard.type("phone-1")
        await page.keyboard.press("Enter")  # the form submits from the keyboard
        await expect(page.locator("#instance-title")).to_be_focused()
        await page.keyboard.press("Tab")
        await expect(page.get_by_role("button", name="Copy the username")).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(page.locator("#copy-status")).not_to_be_empty()
        overflow = await page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, "the page scrolls sideways on a phone"
        assert watched.errors == []


@pytest.mark.skipif(bool(E2E_WS_URL), reason="needs the loopback broker")
async def test_a_broker_that_cannot_be_reached_is_said_in_words(
    browser: Any, broker: Broker, tmp_path: Path
) -> None:
    # aedes answers the WebSocket upgrade on its own path only: this one is refused
    async with (
        console_for(broker, tmp_path, {"WSS_PATH": "/not-mqtt"}) as (m, _),
        page_on(browser, m.url) as (page, watched),
    ):
        await page.get_by_role("button", name="Create a namespace").click()
        await page.get_by_role("button", name="Connect", exact=True).click()
        await expect(page.locator("#mqtt-status")).to_have_text(
            re.compile(r"^Could not connect to ws://127\.0\.0\.1:\d+/not-mqtt: the broker is "),
            timeout=WAIT_MS,
        )
        await expect(page.get_by_role("button", name="Connect", exact=True)).to_be_enabled()
        assert all("WebSocket" in e for e in watched.errors), watched.errors
