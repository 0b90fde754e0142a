"""Quotas and teardown against a real EMQX 6 (skipped unless configured).

Same setup as test_emqx_e2e.py (ZERO_EMQX_E2E_MQTT_URL, the store variables), with EMQX
configured by emqx-config/ (its quota values are tenants/quotas.py's defaults; set the
same QUOTA_* here if you changed them). The teardown tests also need EMQX's REST API, as
the hook has it: EMQX_API_URL, EMQX_API_KEY, EMQX_API_SECRET (they read the retainer),
and the hook running with them (it purges).

What it shows, with real MQTT 5 clients: the session cap refuses the next CONNECT with
0x97 (quota exceeded); a flood of QoS 1 publishes meets the rate limit (PUBACK 0x97); no
retained message of a deleted or an expired instance survives, its will included.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import timedelta
from typing import Any

import pytest

from exhook.emqx_api import HttpxEmqxApi, instance_filter
from tenants.quotas import Quotas
from tenants.settings import EmqxApiSettings
from tenants.store import TenantStore
from tests.conftest import Minted, make_tenant
from tests.e2e.test_emqx_e2e import MQTT_URL, Mqtt, e2e_store, mint

__all__ = ["e2e_store"]  # the fixture, used by name

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not MQTT_URL, reason="ZERO_EMQX_E2E_MQTT_URL is not set"),
]
QUOTA_EXCEEDED = 0x97  # MQTT 5 reason code 151, in a CONNACK or a PUBACK
QUOTAS = Quotas.from_environ()
API = EmqxApiSettings.from_environ()
needs_api = pytest.mark.skipif(not API.enabled, reason="EMQX_API_URL is not set")
TEARDOWN_SECONDS = 60.0  # reaper + kicks + purge, with retries


def amount(rate: str) -> int:
    match = re.match(r"^(\d+)", rate)
    assert match is not None
    return int(match[1])


class Publisher(Mqtt):
    def publish_all(self, topics: list[str], *, retain: bool = False) -> list[int]:
        """Publish each at QoS 1 without waiting in between; the PUBACK reason codes."""
        infos = [self.client.publish(t, b"x", qos=1, retain=retain) for t in topics]
        deadline = time.monotonic() + 30
        while any(i.mid not in self.puback for i in infos) and time.monotonic() < deadline:
            time.sleep(0.01)
        return [self.puback.get(i.mid, -1) for i in infos]

    def set_retained_will(self, topic: str) -> None:
        self.client.will_set(topic, b"gone", qos=1, retain=True)


async def test_the_session_cap_refuses_with_quota_exceeded(e2e_store: TenantStore) -> None:
    tenant = await mint(e2e_store)
    clients: list[Mqtt] = []
    codes: list[int] = []
    try:
        # EMQX counts sessions asynchronously (`emqx_mt_state` registers a session on
        # `session.created`): one at a time, and a few
        # more than the cap at most before the first refusal.
        for n in range(QUOTAS.max_sessions + 3):
            client = Mqtt(tenant.tenant.instance_id, tenant.password, f"s{n}")
            clients.append(client)
            codes.append(await asyncio.to_thread(client.connect))
            if codes[-1] != 0:
                break
        admitted = codes.count(0)
        assert admitted >= QUOTAS.max_sessions, codes
        assert codes[-1] == QUOTA_EXCEEDED, codes
    finally:
        for client in clients:
            await asyncio.to_thread(client.close)
        await e2e_store.delete(tenant.tenant.instance_id)


async def test_a_flood_meets_the_rate_limit(e2e_store: TenantStore) -> None:
    tenant = await mint(e2e_store)
    client = Publisher(tenant.tenant.instance_id, tenant.password, "flood")
    try:
        assert await asyncio.to_thread(client.connect) == 0
        burst = amount(QUOTAS.messages_burst) + 5 * amount(QUOTAS.messages_rate) + 100
        codes = await asyncio.to_thread(client.publish_all, [f"flood/{n}" for n in range(burst)])
        assert QUOTA_EXCEEDED in codes
        assert codes.count(QUOTA_EXCEEDED) < len(codes)  # the first ones went through
    finally:
        await asyncio.to_thread(client.close)
        await e2e_store.delete(tenant.tenant.instance_id)


async def retained_of(instance_id: str) -> list[str]:
    async with HttpxEmqxApi(API) as api:
        return [m.topic for m in await api.list_retained(instance_filter(instance_id))]


async def until_no_retained(instance_id: str) -> list[str]:
    deadline = time.monotonic() + TEARDOWN_SECONDS
    while True:
        left = await retained_of(instance_id)
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(1.0)


async def leave_retained(tenant: Minted) -> Any:
    """Five retained states and a connected client whose retained will is published when
    the teardown kicks it."""
    client = Publisher(tenant.tenant.instance_id, tenant.password, "state")
    client.set_retained_will("status/state")
    assert await asyncio.to_thread(client.connect) == 0
    topics = [f"state/{n}" for n in range(5)]
    assert set(await asyncio.to_thread(client.publish_all, topics, retain=True)) <= {0, 16}
    deadline = time.monotonic() + 10
    while len(await retained_of(tenant.tenant.instance_id)) < 5:
        assert time.monotonic() < deadline, "EMQX did not retain the messages"
        await asyncio.sleep(0.2)
    return client


@needs_api
async def test_no_retained_message_of_a_deleted_instance_survives(
    e2e_store: TenantStore,
) -> None:
    tenant = await mint(e2e_store)
    client = await leave_retained(tenant)
    try:
        await e2e_store.delete(tenant.tenant.instance_id)
        assert await until_no_retained(tenant.tenant.instance_id) == []
    finally:
        await asyncio.to_thread(client.close)


@needs_api
async def test_no_retained_message_of_an_expired_instance_survives(
    e2e_store: TenantStore,
) -> None:
    minted = make_tenant(tag="e2e", ttl=timedelta(seconds=8))
    tenant = Minted(await e2e_store.create(minted.tenant), minted.password)
    client = await leave_retained(tenant)
    try:
        assert await until_no_retained(tenant.tenant.instance_id) == []
        assert await e2e_store.get(tenant.tenant.instance_id) is None  # reaped
    finally:
        await asyncio.to_thread(client.close)
