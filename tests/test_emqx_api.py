"""The EMQX REST client against the stand-in over real HTTP: paths, codes, errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from exhook.emqx_api import (
    CLIENT_PAGE_SIZE,
    NS_PAGE_SIZE,
    RETAINED_PAGE_SIZE,
    EmqxAuthError,
    EmqxRequestError,
    EmqxTimeout,
    EmqxUnavailable,
    HttpxEmqxApi,
    Outcome,
    RetainedMessage,
    instance_filter,
)
from tenants.errors import ConfigError
from tenants.settings import EmqxApiSettings
from tests.fakes.emqx_api import FakeEmqxApi, running_emqx_api
from tests.waiting import until

KEY, SECRET = "zero-exhook", "Sup3r-Secret-Value-42"
NS = "emqx-0123456789abcdef"


@pytest.fixture
async def fake() -> AsyncIterator[FakeEmqxApi]:
    async with running_emqx_api(KEY, SECRET, kick_delay=0.05) as api:
        yield api


def settings_for(fake: FakeEmqxApi, **overrides: object) -> EmqxApiSettings:
    values: dict[str, object] = {
        "url": fake.url,
        "key": KEY,
        "secret": SECRET,
        "timeout_seconds": 0.5,
    }
    values.update(overrides)
    return EmqxApiSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def api(fake: FakeEmqxApi) -> AsyncIterator[HttpxEmqxApi]:
    async with HttpxEmqxApi(settings_for(fake)) as client:
        yield client


# -- settings --------------------------------------------------------------------------------


def test_settings_unset_url_disables_the_api() -> None:
    settings = EmqxApiSettings.from_environ({})
    assert not settings.enabled
    assert settings.timeout_seconds == 5.0
    with pytest.raises(ConfigError):
        HttpxEmqxApi(settings)


def test_settings_from_environ() -> None:
    settings = EmqxApiSettings.from_environ(
        {
            "EMQX_API_URL": "http://emqx:18083/",
            "EMQX_API_KEY": KEY,
            "EMQX_API_SECRET": SECRET,
            "EMQX_API_TIMEOUT_SECONDS": "2.5",
        }
    )
    assert settings.enabled
    assert settings.base_url == "http://emqx:18083/api/v5"
    assert settings.timeout_seconds == 2.5
    assert EmqxApiSettings("https://e/api/v5", KEY, SECRET).base_url == "https://e/api/v5"
    assert SECRET not in repr(settings)


@pytest.mark.parametrize(
    "env",
    [
        {"EMQX_API_URL": "http://emqx:18083"},
        {"EMQX_API_URL": "http://emqx:18083", "EMQX_API_KEY": KEY},
        {"EMQX_API_URL": "ftp://emqx", "EMQX_API_KEY": KEY, "EMQX_API_SECRET": SECRET},
        {"EMQX_API_URL": "http://k:s@emqx", "EMQX_API_KEY": KEY, "EMQX_API_SECRET": SECRET},
        {
            "EMQX_API_URL": "http://e",
            "EMQX_API_KEY": KEY,
            "EMQX_API_SECRET": SECRET,
            "EMQX_API_TIMEOUT_SECONDS": "soon",
        },
    ],
)
def test_settings_refuse_bad_config(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        EmqxApiSettings.from_environ(env)
    assert SECRET not in str(info.value)


# -- namespaces ---------------------------------------------------------------------------------


async def test_delete_namespace_starts_the_kick(fake: FakeEmqxApi, api: HttpxEmqxApi) -> None:
    fake.connect(NS, f"{NS}-a")
    fake.connect(NS, f"{NS}-b")
    assert await api.delete_namespace(NS) is Outcome.DONE
    assert NS not in fake.namespaces
    await until(lambda: fake.clients_of(NS) == [])
    [call] = fake.calls_to("DELETE", f"/mt/ns/{NS}")
    assert call.auth_ok


async def test_delete_unknown_namespace_is_204(fake: FakeEmqxApi, api: HttpxEmqxApi) -> None:
    assert await api.delete_namespace(NS) is Outcome.DONE


async def test_delete_without_emqx_mt_is_gone(fake: FakeEmqxApi, api: HttpxEmqxApi) -> None:
    fake.mt_enabled = False
    assert await api.delete_namespace(NS) is Outcome.GONE
    with pytest.raises(EmqxRequestError, match="emqx_mt"):
        [ns async for ns in api.list_namespaces()]


async def test_list_namespaces_pages_with_last_ns(fake: FakeEmqxApi, api: HttpxEmqxApi) -> None:
    names = [f"emqx-{i:016x}" for i in range(NS_PAGE_SIZE * 2 + 7)] + ["global", "tenant-a"]
    for name in names:
        fake.add_namespace(name)
    listed = [ns async for ns in api.list_namespaces()]
    assert listed == sorted(names)
    pages = fake.calls_to("GET", "/mt/ns_list")
    assert len(pages) == 3
    assert dict(pages[1].query)["last_ns"] == sorted(names)[NS_PAGE_SIZE - 1]
    assert all(dict(p.query)["limit"] == str(NS_PAGE_SIZE) for p in pages)


async def test_list_namespaces_empty(api: HttpxEmqxApi) -> None:
    assert [ns async for ns in api.list_namespaces()] == []


# -- clients --------------------------------------------------------------------------------------


async def test_list_clients_pages_and_filters(fake: FakeEmqxApi, api: HttpxEmqxApi) -> None:
    for i in range(CLIENT_PAGE_SIZE + 3):
        fake.connect(NS, f"{NS}-{i:05d}")
    fake.connect("emqx-ffffffffffffffff", "emqx-ffffffffffffffff-x")
    clients = await api.list_clients(NS)
    assert [c.clientid for c in clients] == fake.clients_of(NS)
    assert all(c.username == NS and c.connected_at for c in clients)
    assert len(fake.calls_to("GET", "/clients")) == 2


async def test_kick_clients(fake: FakeEmqxApi, api: HttpxEmqxApi) -> None:
    fake.connect(NS, f"{NS}-a")
    fake.connect(NS, f"{NS}-b")
    assert await api.kick_clients([]) is Outcome.DONE
    assert fake.calls == []
    assert await api.kick_clients([f"{NS}-a", f"{NS}-a"]) is Outcome.DONE
    assert fake.clients_of(NS) == [f"{NS}-b"]
    [call] = fake.calls_to("POST", "/clients/kickout/bulk")
    assert call.body == [f"{NS}-a"]


async def test_list_retained_of_one_instance_pages_oldest_first(
    fake: FakeEmqxApi, api: HttpxEmqxApi
) -> None:
    other = "emqx-1123456789abcdef"
    mine = [f"{NS}/state/{i}" for i in range(RETAINED_PAGE_SIZE * 2)]  # two full pages
    for topic in mine:
        fake.retainer.retain(topic)
        fake.retainer.retain(f"{other}/state/x")  # rewritten: only the newest stays
    fake.retainer.retain(NS + "x/a")  # a longer name is not a level of NS
    listed = await api.list_retained(instance_filter(NS))
    assert [m.topic for m in listed] == mine
    assert all(isinstance(m, RetainedMessage) and m.publish_at for m in listed)
    pages = [dict(c.query) for c in fake.calls_to("GET", "/mqtt/retainer/messages")]
    # EMQX says hasnext after every full page: the empty third page ends the listing.
    assert [p["page"] for p in pages] == ["1", "2", "3"]
    assert {p["topic"] for p in pages} == {f"{NS}/#"}
    every = await api.list_retained()
    assert len(every) == len(mine) + 2
    assert "topic" not in dict(fake.calls[-1].query)


async def test_delete_retained_of_an_instance_then_nothing_matches(
    fake: FakeEmqxApi, api: HttpxEmqxApi
) -> None:
    for topic in (f"{NS}/a", f"{NS}/a/b", "emqx-1123456789abcdef/a", "global/a"):
        fake.retainer.retain(topic)
    assert await api.delete_retained(instance_filter(NS)) is Outcome.DONE  # 204
    assert fake.retainer.topics() == ["emqx-1123456789abcdef/a", "global/a"]
    assert await api.delete_retained(instance_filter(NS)) is Outcome.GONE  # 404: none left
    (first, _) = fake.calls_to("DELETE", f"/mqtt/retainer/message/{NS}/#")
    assert first.raw_path == f"/mqtt/retainer/message/{NS}%2F%23"  # one path segment


async def test_retainer_errors_are_api_errors(fake: FakeEmqxApi, api: HttpxEmqxApi) -> None:
    fake.fail_next(1, 503)
    with pytest.raises(EmqxUnavailable):
        await api.delete_retained(instance_filter(NS))
    fake.forbid_scope("connections")
    with pytest.raises(EmqxAuthError, match="connections"):
        await api.list_retained(instance_filter(NS))


async def test_ping(fake: FakeEmqxApi, api: HttpxEmqxApi) -> None:
    await api.ping()
    await fake.set_down(True)
    with pytest.raises(EmqxUnavailable):
        await api.ping()


# -- errors ---------------------------------------------------------------------------------------


async def test_wrong_secret_is_an_auth_error_without_the_secret(
    fake: FakeEmqxApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-Secret-Value-99"
    async with HttpxEmqxApi(settings_for(fake, secret=wrong)) as api:
        with pytest.raises(EmqxAuthError, match="EMQX_API_KEY and EMQX_API_SECRET") as info:
            await api.delete_namespace(NS)
    assert "BAD_API_KEY_OR_SECRET" in str(info.value)
    assert fake.calls[0].auth_ok is False
    assert wrong not in caplog.text and wrong not in str(info.value)
    assert "401" in caplog.text


@pytest.mark.parametrize(
    ("scope", "call"),
    [("cluster_operations", "delete"), ("connections", "list")],
)
async def test_missing_scope_names_the_scope(
    fake: FakeEmqxApi, api: HttpxEmqxApi, scope: str, call: str
) -> None:
    fake.forbid_scope(scope)
    operation = api.delete_namespace if call == "delete" else api.list_clients
    with pytest.raises(EmqxAuthError, match=scope):
        await operation(NS)


async def test_server_error_is_unavailable(fake: FakeEmqxApi, api: HttpxEmqxApi) -> None:
    fake.fail_next(1, 503)
    with pytest.raises(EmqxUnavailable, match="503"):
        await api.kick_clients(["c"])
    fake.fail_next(1, 400)
    with pytest.raises(EmqxRequestError, match="400"):
        await api.kick_clients(["c"])
    assert await api.kick_clients(["c"]) is Outcome.DONE


async def test_slow_answer_is_a_timeout(fake: FakeEmqxApi) -> None:
    async with HttpxEmqxApi(settings_for(fake, timeout_seconds=0.1)) as api:
        fake.delay_next(1, 1.0)
        with pytest.raises(EmqxTimeout):
            await api.delete_namespace(NS)
        assert await api.delete_namespace(NS) is Outcome.DONE


async def test_connection_refused_then_back(fake: FakeEmqxApi, api: HttpxEmqxApi) -> None:
    assert await api.delete_namespace(NS) is Outcome.DONE  # a kept-alive connection
    await fake.set_down(True)
    with pytest.raises(EmqxUnavailable):
        await api.delete_namespace(NS)
    await fake.set_down(False)
    assert await api.delete_namespace(NS) is Outcome.DONE


async def test_repr_and_errors_never_show_the_secret(fake: FakeEmqxApi, api: HttpxEmqxApi) -> None:
    assert SECRET not in repr(api)
    await fake.set_down(True)
    with pytest.raises(EmqxUnavailable) as info:
        await api.list_clients(NS)
    assert SECRET not in str(info.value)
