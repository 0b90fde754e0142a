"""EMQX's effective settings, read through the real HTTP client from the EMQX REST
stand-in (tests/fakes/emqx_config_api.py): our emqx-config passes on 6.0 and 6.1+, each
wrong setting is named, and while one is wrong the running hook refuses every CONNECT
and reports unready."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from exhook.emqx_api import HttpxEmqxApi
from exhook.emqx_settings import (
    NOT_CHECKED,
    EffectiveSettings,
    EmqxSettingsCheck,
    problems,
    read_settings,
)
from tenants.settings import EmqxApiSettings
from tenants.store import TenantStore
from tests.conftest import make_tenant
from tests.emqx_harness import ALLOW, DENY, eventually, running_exhook
from tests.fakes.emqx_api import FakeEmqxApi, running_emqx_api
from tests.fakes.emqx_config_api import ROOT, FakeEmqxConfig

Change = Callable[[FakeEmqxConfig], None]


@asynccontextmanager
async def emqx_with(version: str = "6.2.2") -> AsyncIterator[tuple[FakeEmqxApi, HttpxEmqxApi]]:
    async with running_emqx_api(version=version) as fake:
        settings = EmqxApiSettings(fake.url, fake.key, fake.secret, timeout_seconds=0.5)
        async with HttpxEmqxApi(settings) as api:
            yield fake, api


@pytest.mark.parametrize("version", ["6.0.2", "6.2.2"])
async def test_our_emqx_config_passes(version: str) -> None:
    async with emqx_with(version) as (fake, api):
        settings = await read_settings(api)
        assert problems(settings) == ()
        assert set(settings.listeners) == set(fake.config.listeners)
        # The routes the hook reads (README.md lists their scopes), and nothing else.
        expected = {"/configs/global_zone", "/authorization/settings", "/authorization/sources"}
        expected |= {"/listeners", *(f"/listeners/{i}" for i in fake.config.listeners)}
        assert {call.path for call in fake.calls} == expected
        assert all(call.method == "GET" and call.auth_ok for call in fake.calls)


def _set(section: str, key: str, value: Any) -> Change:
    def change(config: FakeEmqxConfig) -> None:
        getattr(config, section)[key] = value

    return change


def _listener(listener_id: str, key: str, value: Any) -> Change:
    def change(config: FakeEmqxConfig) -> None:
        config.listeners[listener_id][key] = value

    return change


def _sources(sources: list[dict[str, Any]]) -> Change:
    def change(config: FakeEmqxConfig) -> None:
        config.sources = sources

    return change


OLD_OVERRIDE = "concat([client_attrs.tns, '-', clientid])"
ACL_60 = (ROOT / "emqx-config" / "acl-6.0.conf").read_text()
# apps/emqx_auth/etc/acl.conf at tag 6.2.2 (what EMQX reads when the path is left alone).
DEFAULT_ACL = """%% comments
{allow, {username, {re, "^dashboard$"}}, subscribe, ["$SYS/#"]}.
{allow, {ipaddr, "127.0.0.1"}, all, ["$SYS/#", "#"]}.
{deny, all, subscribe, ["$SYS/#", {eq, "#"}, {eq, "+/#"}]}.
{allow, {security_profile, legacy}}.
"""
WRONG: list[tuple[str, str, Change, str]] = [
    (
        "6.2.2",
        "old override",
        _set("mqtt", "clientid_override", OLD_OVERRIDE),
        "mqtt.clientid_override",
    ),
    (
        "6.0.2",
        "no override",
        _set("mqtt", "clientid_override", "disabled"),
        "mqtt.clientid_override",
    ),
    ("6.2.2", "no tns", _set("mqtt", "client_attrs_init", []), "mqtt.client_attrs_init"),
    (
        "6.0.2",
        "tns from the whole username",
        _set("mqtt", "client_attrs_init", [{"expression": "username", "set_as_attr": "tns"}]),
        "mqtt.client_attrs_init",
    ),
    ("6.2.2", "tns not a list", _set("mqtt", "client_attrs_init", "tns"), "mqtt.client_attrs_init"),
    (
        "6.2.2",
        "namespace mountpoint off",
        _set("mqtt", "namespace_as_mountpoint", False),
        "mqtt.namespace_as_mountpoint",
    ),
    (
        "6.2.2",
        "include_mountpoint off",
        _set("authorization", "include_mountpoint", False),
        "authorization.include_mountpoint",
    ),
    (
        "6.2.2",
        "no_match allow",
        _set("authorization", "no_match", "allow"),
        "authorization.no_match",
    ),
    (
        "6.0.2",
        "no_match allow",
        _set("authorization", "no_match", "allow"),
        "authorization.no_match",
    ),
    ("6.2.2", "no sources", _sources([]), "authorization.sources"),
    (
        "6.0.2",
        "another source first",
        _sources([{"type": "built_in_database", "enable": True}]),
        "authorization.sources",
    ),
    (
        "6.2.2",
        "EMQX's default allow-all acl.conf",
        _sources([{"type": "file", "enable": True, "rules": DEFAULT_ACL}]),
        "authorization.sources",
    ),
    (
        "6.2.2",
        "the 6.0 rules on 6.2 (no namespace rule)",
        _sources([{"type": "file", "enable": True, "rules": ACL_60}]),
        "authorization.sources",
    ),
    (
        "6.0.2",
        "the rules not readable (path kept)",
        _sources([{"type": "file", "enable": True, "path": "/etc/acl.conf"}]),
        "authorization.sources",
    ),
    (
        "6.2.2",
        "file source disabled",
        _sources([{"type": "file", "enable": False, "rules": ""}]),
        "authorization.sources",
    ),
    (
        "6.0.2",
        "6.0 listener without the mountpoint",
        _listener("ssl:default", "mountpoint", ""),
        "listeners.ssl.default.mountpoint",
    ),
    (
        "6.2.2",
        "a listener mountpoint of its own",
        _listener("wss:default", "mountpoint", "shared/"),
        "listeners.wss.default.mountpoint",
    ),
    (
        "6.2.2",
        "a listener skipping authentication",
        _listener("wss:default", "enable_authn", False),
        "listeners.wss.default.enable_authn",
    ),
]


@pytest.mark.parametrize(
    ("version", "case", "change", "setting"), WRONG, ids=[f"{w[0]}: {w[1]}" for w in WRONG]
)
async def test_each_wrong_setting_is_named(
    version: str, case: str, change: Change, setting: str
) -> None:
    async with emqx_with(version) as (fake, api):
        change(fake.config)
        found = problems(await read_settings(api))
        assert [p.setting for p in found] == [setting], case


async def test_a_disabled_listener_is_not_judged() -> None:
    async with emqx_with("6.0.2") as (fake, api):
        fake.config.listeners["tcp:default"]["mountpoint"] = ""  # enable = false
        assert problems(await read_settings(api)) == ()


def test_bodies_of_any_shape_are_problems_not_crashes() -> None:
    bodies: list[Any] = [None, [], "text", 7, {"mqtt": []}, {"mqtt": {"client_attrs_init": [1]}}]
    for body in bodies:
        found = problems(EffectiveSettings(body, body, body, {"x": body}))
        assert {p.setting for p in found} >= {
            "mqtt.client_attrs_init",
            "mqtt.clientid_override",
            "authorization.no_match",
            "authorization.sources",
        }


async def test_a_key_without_the_scopes_is_a_problem() -> None:
    async with emqx_with() as (fake, api):
        check = EmqxSettingsCheck(api, interval=60)
        fake.forbid_scope("access_control")
        (problem,) = await check.check()
        assert problem.setting == "EMQX_API_KEY"
        assert "access_control" in problem.detail and not check.ok


async def test_emqx_unreachable_keeps_the_last_verdict() -> None:
    async with emqx_with() as (fake, api):
        check = EmqxSettingsCheck(api, interval=60)
        assert check.problems == NOT_CHECKED
        await fake.set_down(True)
        (problem,) = await check.check()  # never read: unknown is wrong
        assert problem.setting == "emqx" and not check.ok
        await fake.set_down(False)
        assert await check.check() == () and check.ok
        await fake.set_down(True)
        assert await check.check() == () and check.ok  # a blip of the REST API


async def test_the_check_runs_periodically_and_logs_the_setting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="exhook.emqx_settings")
    async with emqx_with() as (fake, api), EmqxSettingsCheck(api, interval=0.05) as check:
        assert check.ok and check.checks == 1
        fake.config.mqtt["clientid_override"] = OLD_OVERRIDE
        await until(lambda: not check.ok)
        fake.config.mqtt["clientid_override"] = "concat([username, '-', clientid])"
        await until(lambda: check.ok)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "mqtt.clientid_override" in errors[0]
    assert any("right again" in r.getMessage() for r in caplog.records)


async def until(condition: Callable[[], bool]) -> None:
    from tests.waiting import until as polled

    await polled(condition, timeout=5)


async def readyz(port: int) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/readyz") as response,
    ):
        return response.status


@pytest.mark.parametrize("version", ["6.0.2", "6.2.2"])
async def test_while_a_setting_is_wrong_every_connect_is_refused(
    store: TenantStore, version: str
) -> None:
    good = make_tenant()
    await store.create(good.tenant)
    gid = good.tenant.instance_id
    async with emqx_with(version) as (fake, api):
        check = EmqxSettingsCheck(api, interval=0.05)
        async with running_exhook(store, settings_check=check) as (runtime, emqx):
            assert (await emqx.connect(gid, good.password)).verdict == ALLOW
            assert await readyz(runtime.http_port) == 200
            fake.config.authorization["no_match"] = "allow"

            async def connect() -> str:
                return (await emqx.connect(gid, good.password, "again")).verdict

            assert await eventually(connect, DENY, timeout=5) == DENY
            assert runtime.metrics.count("client.authenticate", "deny", "bad_settings") >= 1
            assert await readyz(runtime.http_port) == 503
            fake.config.authorization["no_match"] = "deny"
            assert await eventually(connect, ALLOW, timeout=5) == ALLOW
            assert await readyz(runtime.http_port) == 200
