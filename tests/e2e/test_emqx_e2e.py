"""Against a real EMQX 6 wired to a running ExHook (skipped unless configured).

Set:
- `ZERO_EMQX_E2E_MQTT_URL`: `mqtt://host:1883` or `mqtts://host:8883` of an EMQX whose
  `exhook.servers` point at a running `zero-emqx-exhook` (or `zero-emqx serve`),
  configured as emqx-config/ says (client_attrs_init tns = substr(username, 0, 21), namespace
  mountpoint, clientid_override = concat([username, '-', clientid]), an empty
  built-in-database authenticator, the file source with emqx-config/acl.conf
  (acl-6.0.conf on 6.0) and no_match = deny, include_mountpoint on 6.1+);
- optionally `ZERO_EMQX_E2E_MQTT_CA` (PEM) for mqtts;
- optionally `ZERO_EMQX_E2E_EXHOOK_METRICS` (the hook's `http://host:9001/metrics`): the
  hook-call count of a client on 200 topics is read there (skipped without it);
- the same store variables the ExHook uses (`ZERO_EMQX_STORE`, `ZERO_EMQX_DATA_DIR`,
  or `KUBE_NAMESPACE` and a kubeconfig): the tests write tenant records there directly,
  as the manager would, and watch the hook follow.

Needs `paho-mqtt` (2.x). What it shows, with real MQTT 5 clients: a tenant is admitted;
wrong password, unknown username and anonymous are refused; two tenants publishing to the
same topic never see each other's messages; two tenants using the same client id do not
take over each other's session; pausing or deleting the record refuses new CONNECTs
within seconds; a publish-only credential receives nothing, not even by resuming its
owner's session with the owner's client id; a subscribe-only one cannot publish; a client
publishing to 200 topics costs the hook no call after its CONNECT.
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
from tests.conftest import Minted, MintedCredential, make_credential, make_tenant
from tests.waiting import until

MQTT_URL = os.environ.get("ZERO_EMQX_E2E_MQTT_URL", "")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not MQTT_URL, reason="ZERO_EMQX_E2E_MQTT_URL is not set"),
]
NOT_AUTHORIZED = {134, 135}  # MQTT 5: bad user name or password, not authorized
REFUSED = 135  # MQTT 5 reason code "not authorized" in a SUBACK or PUBACK (deny_action ignore)
DELIVERED = {0, 16}  # PUBACK: success, or "no matching subscribers" (allowed, nobody listens)
METRICS_URL = os.environ.get("ZERO_EMQX_E2E_EXHOOK_METRICS", "")
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
        self.session_present: bool | None = None
        self.suback: list[int] = []
        self.puback: dict[int, int] = {}  # message id -> PUBACK reason code
        self.messages: list[tuple[str, bytes]] = []
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = lambda _c, _u, msg: self.messages.append((msg.topic, msg.payload))

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: Any, _props: Any) -> None:
        self.reason = int(reason.value)
        self.session_present = bool(flags.session_present)
        self.connected.set()

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, reasons: Any, _props: Any) -> None:
        self.suback = [int(r.value) for r in reasons]
        self.subscribed.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _props: Any) -> None:
        self.puback[mid] = int(reason.value)

    def connect(
        self, timeout: float = 10.0, *, clean_start: bool = True, session_expiry: int = 0
    ) -> int:
        """The CONNACK reason code (0 = admitted); `session_present` is set too."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = session_expiry
        self.client.connect(
            self.host, self.port, keepalive=30, clean_start=clean_start, properties=properties
        )
        self.client.loop_start()
        if not self.connected.wait(timeout):
            raise TimeoutError("no CONNACK")
        assert self.reason is not None
        return self.reason

    def subscribe(self, topic: str) -> list[int]:
        """The SUBACK reason codes (0-2 granted QoS, 135 not authorized)."""
        self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(10), "no SUBACK"
        return self.suback

    def publish(self, topic: str, payload: bytes) -> int:
        """Publish at QoS 1; the PUBACK reason code (0 success, 135 not authorized)."""
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        deadline = time.monotonic() + 10
        while info.mid not in self.puback and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.puback[info.mid]

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
        await until(lambda: ("temperature/sensor1", b"a:" + marker) in sub_a.messages)
        await until(lambda: ("temperature/sensor1", b"b:" + marker) in sub_b.messages)
        await asyncio.sleep(0.5)  # a leak would come with the tenant's own message
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


async def mint_with(store: TenantStore, *credentials: MintedCredential) -> Minted:
    minted = make_tenant(tag="e2e")
    tenant = replace(minted.tenant, credentials=tuple(c.credential for c in credentials))
    return Minted(await store.create(tenant), minted.password)


def username_of(tenant: Minted, credential: MintedCredential) -> str:
    return tenant.tenant.username_of(credential.credential)


async def test_a_publish_only_credential_receives_nothing(e2e_store: TenantStore) -> None:
    """Not by subscribing (SUBACK 135), and not by resuming its owner's session: EMQX
    makes the client id `<username>-<own id>`, so the owner's id names another session."""
    device = make_credential(label="device", allow_publish=True, allow_subscribe=False)
    tenant = await mint_with(e2e_store, device)
    owner_id = tenant.tenant.instance_id
    owner = Mqtt(owner_id, tenant.password, "dash")
    try:
        assert await asyncio.to_thread(owner.connect, session_expiry=300) == 0
        assert await asyncio.to_thread(owner.subscribe, "#") == [1]
        await asyncio.to_thread(owner.close)  # the session stays, with its subscription
        sender = Mqtt(owner_id, tenant.password, "sender")
        assert await asyncio.to_thread(sender.connect) == 0
        marker = uuid.uuid4().hex.encode()
        assert await asyncio.to_thread(sender.publish, "queued/for/owner", marker) in DELIVERED
        await asyncio.to_thread(sender.close)

        thief = Mqtt(username_of(tenant, device), device.password, "dash")  # the owner's id
        assert await asyncio.to_thread(thief.connect, clean_start=False, session_expiry=300) == 0
        assert thief.session_present is False
        assert await asyncio.to_thread(thief.subscribe, "#") == [REFUSED]
        assert await asyncio.to_thread(thief.publish, "from/device", b"d:" + marker) in DELIVERED
        await asyncio.sleep(1.0)
        assert thief.messages == []
        await asyncio.to_thread(thief.close)

        back = Mqtt(owner_id, tenant.password, "dash")  # the owner's session is intact
        assert await asyncio.to_thread(back.connect, clean_start=False, session_expiry=0) == 0
        assert back.session_present is True
        await until(lambda: {marker, b"d:" + marker} <= {p for _, p in back.messages})
        await asyncio.to_thread(back.close)
    finally:
        await e2e_store.delete(tenant.tenant.instance_id)


async def test_a_subscribe_only_credential_cannot_publish(e2e_store: TenantStore) -> None:
    reader = make_credential(label="reader", allow_publish=False, allow_subscribe=True)
    tenant = await mint_with(e2e_store, reader)
    owner = Mqtt(tenant.tenant.instance_id, tenant.password, "watch")
    dashboard = Mqtt(username_of(tenant, reader), reader.password, "dash")
    try:
        assert await asyncio.to_thread(owner.connect) == 0
        assert await asyncio.to_thread(owner.subscribe, "#") == [1]
        assert await asyncio.to_thread(dashboard.connect) == 0
        assert await asyncio.to_thread(dashboard.subscribe, "sensors/#") == [1]
        marker = uuid.uuid4().hex.encode()
        assert await asyncio.to_thread(dashboard.publish, "sensors/1", marker) == REFUSED
        assert await asyncio.to_thread(owner.publish, "sensors/2", marker) in DELIVERED
        await until(lambda: ("sensors/2", marker) in dashboard.messages)  # it reads
        assert ("sensors/1", marker) not in owner.messages  # it never wrote
    finally:
        for client in (owner, dashboard):
            await asyncio.to_thread(client.close)
        await e2e_store.delete(tenant.tenant.instance_id)


async def hook_calls() -> float:
    """Every call the hook answered so far (its decisions counter, all hooks)."""
    import urllib.request

    def read() -> str:
        with urllib.request.urlopen(METRICS_URL, timeout=5) as response:  # noqa: S310
            return str(response.read().decode())

    text = await asyncio.to_thread(read)
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("zero_emqx_exhook_decisions_total{")
    )


@pytest.mark.skipif(not METRICS_URL, reason="ZERO_EMQX_E2E_EXHOOK_METRICS is not set")
async def test_a_client_on_200_topics_costs_the_hook_nothing(e2e_store: TenantStore) -> None:
    """Past EMQX's 32-entry authorization cache, a hook on client.authorize was asked
    about every PUBLISH; ours is asked once, at CONNECT."""
    tenant = await mint(e2e_store)
    client = Mqtt(tenant.tenant.instance_id, tenant.password, "gateway")
    try:
        before = await hook_calls()
        assert await asyncio.to_thread(client.connect) == 0
        for round_ in range(2):
            for n in range(200):
                code = await asyncio.to_thread(client.publish, f"sensors/{n}", b"%d" % round_)
                assert code in DELIVERED
        assert await hook_calls() - before == 1  # the CONNECT's authenticate, nothing else
    finally:
        await asyncio.to_thread(client.close)
        await e2e_store.delete(tenant.tenant.instance_id)
