"""The server around the hooks: HTTP/2 keepalive, TLS, health and readiness, metrics,
store outages, graceful shutdown and the entry points."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import h2.config
import h2.connection
import h2.events
import pytest

from exhook.main import serve
from exhook.observability import ExhookMetrics
from exhook.server import SERVER_OPTIONS, ExhookRuntime, create_server
from exhook.settings import ExhookSettings
from exhook.verifier import Verifier
from tenants.errors import ConfigError, StoreUnavailable
from tenants.index import TenantIndex
from tenants.local_store import LocalStore
from tenants.record import Tenant
from tenants.store import Change, Listing, TenantStore
from tests.conftest import Minted
from tests.emqx_harness import ALLOW, DENY, FakeEmqx, eventually, exhook_settings, running_exhook
from tests.hostile_values import make_unreadable
from tests.test_exhook_service import CountingVerify, assert_explicit, stored

SERVING, NOT_SERVING = 1, 2  # grpc.health.v1 HealthCheckResponse.ServingStatus


# -- HTTP/2 keepalive -----------------------------------------------------------------


async def ping_without_calls(
    port: int, *, interval: float, duration: float
) -> tuple[int, int, h2.events.ConnectionTerminated | None]:
    """Speak h2c (prior knowledge) and send PINGs, never a call. -> (sent, acked, goaway)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    sent = acked = 0
    goaway: h2.events.ConnectionTerminated | None = None

    async def read() -> None:
        nonlocal acked, goaway
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.PingAckReceived):
                    acked += 1
                elif isinstance(event, h2.events.ConnectionTerminated):
                    goaway = event
                    return
            writer.write(conn.data_to_send())

    reading = asyncio.create_task(read(), name="h2-reader")
    try:
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline and not reading.done():
            conn.ping(sent.to_bytes(8, "big"))
            sent += 1
            writer.write(conn.data_to_send())
            await writer.drain()
            await asyncio.sleep(interval)
        await asyncio.sleep(0.2)  # the last ACK
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return sent, acked, goaway


async def test_emqx_keepalive_pings_never_get_goaway(tmp_path: Path) -> None:
    """grpc-erl pings every 60 s per connection, with or without calls. Pinging every
    200 ms for 3 s (far faster) must get every PING acknowledged and no GOAWAY."""
    store = LocalStore(tmp_path / "data")
    async with running_exhook(store) as (runtime, emqx):
        sent, acked, goaway = await ping_without_calls(
            runtime.grpc_port, interval=0.2, duration=3.0
        )
        assert goaway is None
        assert sent >= 14 and acked == sent
        assert await emqx.load()  # and the server still serves
    await store.close()


async def test_a_default_grpc_server_would_goaway_emqx() -> None:
    """Without SERVER_OPTIONS, gRPC sends GOAWAY ENHANCE_YOUR_CALM "too_many_pings" after
    3 pings without calls (measured: after the 4th ping at 200 ms, ~0.8 s)."""
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        sent, _, goaway = await ping_without_calls(port, interval=0.2, duration=3.0)
    finally:
        await server.stop(None)
    assert goaway is not None
    assert goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert goaway.additional_data == b"too_many_pings"
    assert sent <= 6
    assert ("grpc.http2.max_ping_strikes", 0) in SERVER_OPTIONS


# -- TLS --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl cannot make a test certificate: {exc}")
    return cert, key


async def test_tls(store: TenantStore, tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    good = await stored(store)
    async with running_exhook(store, tls_cert=cert, tls_key=key) as (runtime, _):
        target = f"127.0.0.1:{runtime.grpc_port}"
        async with FakeEmqx(
            target, root_certificates=cert.read_bytes(), server_name="localhost"
        ) as emqx:
            assert await emqx.load() == ["client.authenticate"]
            assert_explicit(await emqx.connect(good.tenant.instance_id, good.password), ALLOW)
        async with FakeEmqx(target, request_timeout=1.0) as cleartext:
            with pytest.raises(grpc.aio.AioRpcError):
                await cleartext.load()


def test_tls_files_must_be_readable(tmp_path: Path) -> None:
    settings = ExhookSettings(tls_cert=tmp_path / "nope.pem", tls_key=tmp_path / "nope.key")
    with pytest.raises(ConfigError, match="TLS"):
        settings.read_tls()
    with pytest.raises(ConfigError, match="together"):
        ExhookSettings(tls_cert=tmp_path / "c.pem")


async def test_a_taken_port_fails_loudly() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = exhook_settings(addr=("127.0.0.1", port))
        verifier = Verifier(workers=1, cache_size=1)
        try:
            with pytest.raises(OSError, match="cannot listen"):
                create_server(settings, TenantIndex(), verifier, ExhookMetrics())
        finally:
            verifier.close()


# -- readiness, health, metrics, outages --------------------------------------------------


class FlakyStore:
    """Wraps a store: `gate` holds the first list back; `down` makes list, watch and get fail."""

    def __init__(self, inner: TenantStore) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.down = False

    async def list(self) -> Listing:
        await self.gate.wait()
        if self.down:
            raise StoreUnavailable("test: store down")
        return await self.inner.list()

    async def watch(self, revision: str) -> AsyncIterator[Change]:
        async for change in self.inner.watch(revision):
            if self.down:
                raise StoreUnavailable("test: store down")
            yield change

    async def get(self, instance_id: str) -> Tenant | None:
        if self.down:
            raise StoreUnavailable("test: store down")
        return await self.inner.get(instance_id)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def http_get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as r,
    ):
        return r.status, await r.text()


async def test_not_ready_until_synced_then_serving(store: TenantStore) -> None:
    good = await stored(store)
    flaky = FlakyStore(store)
    async with running_exhook(flaky, synced=False) as (runtime, emqx):  # type: ignore[arg-type]
        assert (await http_get(runtime.http_port, "/healthz"))[0] == 200
        assert (await http_get(runtime.http_port, "/readyz"))[0] == 503
        assert await emqx.health() == NOT_SERVING
        assert await emqx.health("emqx.exhook.v3.HookProvider") == NOT_SERVING
        assert_explicit(await emqx.connect(good.tenant.instance_id, good.password), DENY)
        assert runtime.metrics.count("client.authenticate", "deny", "not_synced") == 1
        flaky.gate.set()

        async def health() -> int:
            return await emqx.health()

        assert await eventually(health, SERVING, timeout=5) == SERVING
        assert await emqx.health("emqx.exhook.v3.HookProvider") == SERVING
        assert (await http_get(runtime.http_port, "/readyz"))[0] == 200
        assert_explicit(await emqx.connect(good.tenant.instance_id, good.password), ALLOW)


async def test_an_unreachable_store_keeps_the_last_index(store: TenantStore) -> None:
    good = await stored(store)
    flaky = FlakyStore(store)
    flaky.gate.set()
    async with running_exhook(flaky) as (runtime, emqx):  # type: ignore[arg-type]
        flaky.down = True
        late: Minted = await stored(store)  # its watch event finds the store "down"

        async def reachable() -> bool:
            return runtime.sync.store_reachable

        assert await eventually(reachable, False, timeout=5) is False
        gid = good.tenant.instance_id
        assert_explicit(await emqx.connect(gid, good.password), ALLOW)
        assert_explicit(await emqx.connect(late.tenant.instance_id, late.password), DENY)
        assert (await http_get(runtime.http_port, "/readyz"))[0] == 200
        _, metrics = await http_get(runtime.http_port, "/metrics")
        assert "zero_emqx_exhook_store_reachable 0.0" in metrics
        flaky.down = False

        async def late_connect() -> str:
            return (await emqx.connect(late.tenant.instance_id, late.password)).verdict

        assert await eventually(late_connect, ALLOW, timeout=8) == ALLOW
        assert runtime.sync.watch_restarts >= 1


async def test_metrics_endpoint(store: TenantStore) -> None:
    good = await stored(store)
    async with running_exhook(store) as (runtime, emqx):
        await emqx.connect(good.tenant.instance_id, good.password)
        await emqx.connect(good.tenant.instance_id, good.password)
        status, text = await http_get(runtime.http_port, "/metrics")
    assert status == 200
    decisions = "zero_emqx_exhook_decisions_total"
    for line in [
        f'{decisions}{{hook="client.authenticate",reason="ok",result="allow"}} 1.0',
        f'{decisions}{{hook="client.authenticate",reason="cached",result="allow"}} 1.0',
        'zero_emqx_exhook_verify_cache_total{result="hit"} 1.0',
        "zero_emqx_exhook_argon2_verifications_total 1.0",
        "zero_emqx_exhook_overload_sheds_total 0.0",
        "zero_emqx_exhook_index_tenants 1.0",
        "zero_emqx_exhook_index_synced 1.0",
        "zero_emqx_exhook_watch_restarts_total 0.0",
        'zero_emqx_exhook_decision_seconds_count{hook="client.authenticate"} 2.0',
    ]:
        assert line in text, line


async def test_an_unreadable_record_is_refused_and_counted(store: TenantStore) -> None:
    bad, good = await stored(store), await stored(store)
    async with running_exhook(store) as (runtime, emqx):
        bid = bad.tenant.instance_id
        assert_explicit(await emqx.connect(bid, bad.password), ALLOW)
        await make_unreadable(store, bid)

        async def refused() -> str:
            return (await emqx.connect(bid, bad.password)).verdict

        assert await eventually(refused, DENY, timeout=5) == DENY
        assert runtime.index.unreadable().keys() == {bid}
        assert await store.delete(good.tenant.instance_id)

        async def good_gone() -> str:
            return (await emqx.connect(good.tenant.instance_id, good.password)).verdict

        assert await eventually(good_gone, DENY, timeout=5) == DENY
        _, text = await http_get(runtime.http_port, "/metrics")
    assert "zero_emqx_exhook_unreadable_records 1.0" in text
    assert "zero_emqx_exhook_unreadable_records_found_total 1.0" in text
    assert bad.tenant.password_hash not in text


async def test_a_fresh_exhook_syncs_past_an_unreadable_record(store: TenantStore) -> None:
    bad, good = await stored(store), await stored(store)
    await make_unreadable(store, bad.tenant.instance_id)
    async with running_exhook(store) as (runtime, emqx):
        assert runtime.index.synced
        assert_explicit(await emqx.connect(good.tenant.instance_id, good.password), ALLOW)
        assert_explicit(await emqx.connect(bad.tenant.instance_id, bad.password), DENY)


# -- shutdown and entry points ------------------------------------------------------------


async def test_graceful_shutdown(store: TenantStore) -> None:
    good = await stored(store)
    verify = CountingVerify(delay=0.4)
    settings = exhook_settings(shutdown_grace=3.0)
    runtime = ExhookRuntime(settings, store, verify_fn=verify)
    await runtime.__aenter__()
    exited = False
    try:
        assert await runtime.sync.wait_synced(5)
        target = f"127.0.0.1:{runtime.grpc_port}"
        async with FakeEmqx(target) as emqx:
            assert await eventually(emqx.health, SERVING) == SERVING
            in_flight = asyncio.create_task(emqx.connect(good.tenant.instance_id, good.password))
            await asyncio.sleep(0.1)
            stopping = asyncio.create_task(runtime.__aexit__(None, None, None))
            exited = True
            await asyncio.sleep(0.1)
            assert not runtime.ready()
            assert runtime.grpc is not None
            assert (await runtime.grpc.health.Check(_health_request(), None)).status == NOT_SERVING
            assert_explicit(await in_flight, ALLOW)  # finished within the grace
            await asyncio.wait_for(stopping, 5)
        async with FakeEmqx(target, request_timeout=1.0) as late:
            with pytest.raises(grpc.aio.AioRpcError):
                await late.load()
    finally:
        if not exited:
            await runtime.__aexit__(None, None, None)
    names = {task.get_name() for task in asyncio.all_tasks()}
    assert not names & {"exhook-readiness", "tenant-index-sync"}


def _health_request() -> object:
    from grpc_health.v1 import health_pb2

    return health_pb2.HealthCheckRequest(service="")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_serve_runs_until_stop(store: TenantStore) -> None:
    good = await stored(store)
    port = free_port()
    settings = exhook_settings(addr=("127.0.0.1", port))
    stop = asyncio.Event()
    serving = asyncio.create_task(serve(settings, store, stop), name="serve")
    async with FakeEmqx(f"127.0.0.1:{port}") as emqx:

        async def connect() -> str:
            try:
                return (await emqx.connect(good.tenant.instance_id, good.password)).verdict
            except grpc.aio.AioRpcError:
                return "unavailable"

        assert await eventually(connect, ALLOW, timeout=5) == ALLOW
        stop.set()
        await asyncio.wait_for(serving, 5)


async def test_attached_work_lives_inside_the_runtime(store: TenantStore) -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifecycle(runtime: ExhookRuntime) -> AsyncIterator[None]:
        assert runtime.sync.index is runtime.index
        events.append("enter")
        try:
            yield
        finally:
            assert runtime.grpc is not None
            events.append("exit")

    async with ExhookRuntime(exhook_settings(), store, attach=[lifecycle]) as runtime:
        assert events == ["enter"]
        assert runtime.grpc_port
    assert events == ["enter", "exit"]
