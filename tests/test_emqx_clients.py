"""The manager's reads of an instance's use from EMQX (against the stand-in over real
HTTP): each value optional, and the answer says whether EMQX gave them all."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from manager.emqx_clients import ConnectedClients, EmqxState, Usage
from manager.views import usage_view
from tenants.quotas import Quotas
from tenants.settings import EmqxApiSettings
from tests.fakes.emqx_api import FakeEmqxApi, running_emqx_api

IID = "emqx-0123456789abcdef"
SCOPED = f"{IID}.0123abcd"
OTHER = "emqx-1123456789abcdef"


@pytest.fixture
async def fake() -> AsyncIterator[FakeEmqxApi]:
    async with running_emqx_api() as api:
        yield api


@pytest.fixture
async def clients(fake: FakeEmqxApi) -> AsyncIterator[ConnectedClients]:
    reader = ConnectedClients(EmqxApiSettings(fake.url, fake.key, fake.secret, 0.5))
    try:
        yield reader
    finally:
        await reader.aclose()


def busy(fake: FakeEmqxApi) -> None:
    fake.connect(IID, f"{IID}-a")
    fake.connect(SCOPED, f"{IID}-b")
    fake.connect(OTHER, f"{OTHER}-a")
    for n in range(1500):  # more than one page of the retainer listing
        fake.retainer.retain(f"{IID}/state/{n}")
    fake.retainer.retain(f"{OTHER}/state")
    fake.mt.messaging_stats[IID] = {"messages.received": 7, "messages.sent": 5, "bytes.sent": 90}


async def test_a_retained_count_cut_off_by_the_page_cap_is_unknown(
    fake: FakeEmqxApi, clients: ConnectedClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    busy(fake)  # 1500 retained: two pages of 1000
    assert await clients.retained_count(IID) == 1500
    monkeypatch.setattr("manager.emqx_clients.MAX_RETAINED_PAGES", 1)
    assert await clients.retained_count(IID) is None  # not 1000: a partial count is no count


async def test_usage_with_emqx_up(fake: FakeEmqxApi, clients: ConnectedClients) -> None:
    busy(fake)
    usage = await clients.usage(IID, (IID, SCOPED))
    assert usage == Usage(
        EmqxState.OK,
        sessions=2,
        retained_messages=1500,
        counters={
            "messages_received": 7,
            "messages_sent": 5,
            "messages_dropped": 0,
            "bytes_received": 0,
            "bytes_sent": 90,
        },
    )
    assert fake.calls_to("GET", f"/mt/ns/{IID}/metrics")[0].auth_ok
    listed = [dict(c.query) for c in fake.calls_to("GET", "/mqtt/retainer/messages")]
    assert {q["topic"] for q in listed} == {f"{IID}/#"}
    view = usage_view(usage, Quotas())
    assert view["sessions"] == {"used": 2, "limit": 10}
    assert view["retained_messages"] == {"used": 1500, "limit": 100}  # over: enforced later


async def test_emqx_60_has_no_namespace_counters(
    fake: FakeEmqxApi, clients: ConnectedClients
) -> None:
    busy(fake)
    fake.mt.metrics_enabled = False  # the route is absent before 6.1.0
    usage = await clients.usage(IID, (IID,))
    assert usage.emqx is EmqxState.OK
    assert usage.sessions == 1 and usage.retained_messages == 1500
    assert usage.counters is None


async def test_a_namespace_before_its_first_session(clients: ConnectedClients) -> None:
    usage = await clients.usage(IID, (IID,))
    assert usage == Usage(EmqxState.OK, sessions=0, retained_messages=0, counters=None)


@pytest.mark.parametrize(
    ("path", "missing"),
    [("/clients", "sessions"), ("/mqtt/retainer/", "retained_messages"), ("/mt/", "counters")],
)
async def test_one_failed_read_is_null_and_marked(
    fake: FakeEmqxApi, clients: ConnectedClients, path: str, missing: str
) -> None:
    busy(fake)
    fake.fail_next(1, 503, path=path)
    usage = await clients.usage(IID, (IID, SCOPED))
    assert usage.emqx is EmqxState.UNREACHABLE
    assert getattr(usage, missing) is None
    others = {"sessions", "retained_messages", "counters"} - {missing}
    assert all(getattr(usage, name) is not None for name in others)


async def test_emqx_down_still_answers(fake: FakeEmqxApi, clients: ConnectedClients) -> None:
    await fake.set_down(True)
    assert await clients.usage(IID, (IID,)) == Usage(EmqxState.UNREACHABLE)
    await fake.set_down(False)
    fake.forbid_scope("cluster_operations")  # a key without /mt: counters unknown
    usage = await clients.usage(IID, (IID,))
    assert usage.emqx is EmqxState.UNREACHABLE and usage.counters is None
    assert usage.sessions == 0


async def test_without_emqx_configured() -> None:
    reader = ConnectedClients(EmqxApiSettings())
    usage = await reader.usage(IID, (IID,))
    assert usage == Usage(EmqxState.NOT_CONFIGURED)
    assert usage_view(usage, Quotas(max_sessions=3)) == {
        "emqx": "not_configured",
        "sessions": {"used": None, "limit": 3},
        "retained_messages": {"used": None, "limit": 100},
        "counters": None,
    }
