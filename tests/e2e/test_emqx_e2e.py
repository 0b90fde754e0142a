"""Against a real EMQX 6 wired to a running ExHook (skipped unless configured).

Set:
- `ZERO_EMQX_E2E_MQTT_URL`: `mqtt://host:1883` or `mqtts://host:8883` of an EMQX whose
  `exhook.servers` point at a running `zero-emqx-exhook` (or `zero-emqx serve`),
  configured as emqx-config/ says (client_attrs_init tns = substr(username, 0, 21), namespace
  mountpoint, clientid_override = concat([username, '-', clientid]), an empty
  built-in-database authenticator, the file source with emqx-config/acl.conf
  (acl-6.0.conf on 6.0) and no_match = deny, include_mountpoint on 6.1+);
- optionally `ZERO_EMQX_E2E_MQTT_CA` (PEM) for mqtts;
- the same store variables the ExHook uses (`ZERO_EMQX_STORE`, `ZERO_EMQX_DATA_DIR`,
  or `KUBE_NAMESPACE` and a kubeconfig): the tests write tenant records there directly,
  as the manager would, and watch the hook follow.

Needs `paho-mqtt` (2.x). What it shows, with real MQTT 5 clients: a tenant is admitted;
wrong password, unknown username and anonymous are refused; two tenants publishing to the
same topic never see each other's messages; two tenants using the same client id do not
take over each other's session; pausing or deleting the record refuses new CONNECTs
within seconds.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import pytest

from tenants.record import Tenant
from tenants.settings import StoreSettings
from tenants.store import TenantStore
from tests.conftest import Minted, make_tenant

MQTT_URL = os.environ.get("ZERO_EMQX_E2E_MQTT_URL", "")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not MQTT_URL, reason="ZERO_EMQX_E2E_MQTT_URL is not set"),
]
NOT_AUTHORIZED = {134, 135}  # MQTT 5: bad user name or password, not authorized
FOLLOW_SECONDS = 10.0


def paho() -> Any:
    return pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed")


class Mqtt:
    """A paho MQTT 5 client driven synchronously (call its methods via asyncio.to_thread)."""

    def __init__(self, username: str | None, password: str | None, client_id: str) -> None:
        mqtt = paho()
        url = urlsplit(MQTT_URL)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (8883 if url.scheme == "mqtts" else 1883)
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if url.scheme == "mqtts":
            self.client.tls_set(
                ca_certs=os.environ.get("ZERO_EMQX_E2E_MQTT_CA") or None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.reason: int | None = None
        self.messages: list[tuple[str, bytes]] = []
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self.messages.append((msg.topic, msg.payload))

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.reason = int(reason.value)
        self.connected.set()

    def connect(self, timeout: float = 10.0) -> int:
        """The CONNACK reason code (0 = admitted)."""
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(timeout):
            raise TimeoutError("no CONNACK")
        assert self.reason is not None
        return self.reason

    def subscribe(self, topic: str) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(10), "no SUBACK"

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
async def e2e_store() -> AsyncIterator[TenantStore]:
    from tenants.stores import open_store

    store = open_store(StoreSettings.from_environ())
    try:
        yield store
    finally:
        await store.close()


async def mint(store: TenantStore) -> Minted:
    minted = make_tenant(tag="e2e")
    return Minted(await store.create(minted.tenant), minted.password)


async def connect_rc(username: str | None, password: str | None, client_id: str = "e2e") -> int:
    client = Mqtt(username, password, client_id)
    try:
        return await asyncio.to_thread(client.connect)
    finally:
        await asyncio.to_thread(client.close)


async def until_refused(tenant: Minted) -> int:
    deadline = time.monotonic() + FOLLOW_SECONDS
    while True:
        rc = await connect_rc(tenant.tenant.instance_id, tenant.password)
        if rc != 0 or time.monotonic() > deadline:
            return rc
        await asyncio.sleep(0.5)


async def test_admission(e2e_store: TenantStore) -> None:
    tenant = await mint(e2e_store)
    other = await mint(e2e_store)
    try:
        assert await connect_rc(tenant.tenant.instance_id, tenant.password) == 0
        assert await connect_rc(tenant.tenant.instance_id, other.password) in NOT_AUTHORIZED
        assert await connect_rc("emqx-0000000000000000", tenant.password) in NOT_AUTHORIZED
        assert await connect_rc("alice", "secret") in NOT_AUTHORIZED
        assert await connect_rc(None, None) in NOT_AUTHORIZED
    finally:
        await e2e_store.delete(tenant.tenant.instance_id)
        await e2e_store.delete(other.tenant.instance_id)


async def test_isolation_and_no_client_id_takeover(e2e_store: TenantStore) -> None:
    a, b = await mint(e2e_store), await mint(e2e_store)
    sub_a = Mqtt(a.tenant.instance_id, a.password, "sub")
    sub_b = Mqtt(b.tenant.instance_id, b.password, "sub")  # the same client id
    try:
        assert await asyncio.to_thread(sub_a.connect) == 0
        assert await asyncio.to_thread(sub_b.connect) == 0
        await asyncio.to_thread(sub_a.subscribe, "#")
        await asyncio.to_thread(sub_b.subscribe, "#")
        marker = uuid.uuid4().hex.encode()
        await asyncio.to_thread(sub_a.publish, "temperature/sensor1", b"a:" + marker)
        await asyncio.to_thread(sub_b.publish, "temperature/sensor1", b"b:" + marker)
        await asyncio.sleep(1.0)
        assert (("temperature/sensor1", b"a:" + marker)) in sub_a.messages
        assert all(not payload.startswith(b"b:") for _, payload in sub_a.messages)
        assert (("temperature/sensor1", b"b:" + marker)) in sub_b.messages
        assert all(not payload.startswith(b"a:") for _, payload in sub_b.messages)
        assert sub_a.client.is_connected() and sub_b.client.is_connected()
    finally:
        for client in (sub_a, sub_b):
            await asyncio.to_thread(client.close)
        await e2e_store.delete(a.tenant.instance_id)
        await e2e_store.delete(b.tenant.instance_id)


async def test_pause_and_delete_are_followed(e2e_store: TenantStore) -> None:
    tenant = await mint(e2e_store)
    instance_id = tenant.tenant.instance_id
    assert await connect_rc(instance_id, tenant.password) == 0
    current: Tenant | None = await e2e_store.get(instance_id)
    assert current is not None
    paused = await e2e_store.update(replace(current, paused=True))
    assert await until_refused(tenant) in NOT_AUTHORIZED
    await e2e_store.update(replace(paused, paused=False))
    await e2e_store.delete(instance_id)
    assert await until_refused(tenant) in NOT_AUTHORIZED
