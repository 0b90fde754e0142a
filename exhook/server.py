"""The gRPC server (HookProvider + grpc.health.v1) and the runtime that owns everything.

`create_server` builds a server from its dependencies (tests run the real thing on
port 0). `ExhookRuntime` is the one async context manager of a running ExHook: the
index sync task, the gRPC server, the side HTTP server and the readiness task, started
in that order and stopped in reverse, with in-flight calls given `shutdown_grace`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from exhook.emqx_settings import EmqxSettingsCheck
from exhook.lookup import StoreLookup
from exhook.observability import ExhookMetrics, create_http_app
from exhook.rpc import SERVICE_NAME, add_to_server
from exhook.service import Clock, HookProvider, utc_clock
from exhook.settings import ExhookSettings
from exhook.verifier import Verifier, VerifyFn
from tenants.hashing import verify_password
from tenants.index import IndexSync, TenantIndex
from tenants.store import TenantStore
from tenants.tasks import cancel_and_wait

log = logging.getLogger(__name__)

PENDING_CALLS_SOFT_LIMIT = 6_000
PENDING_CALLS_HARD_LIMIT = 8_000

SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    # EMQX's gRPC client (grpc-erl) sends an HTTP/2 PING every 60 s on each of its
    # `pool_size` (8) connections per node, also when no call is running. gRPC's default
    # server policy counts pings without calls as abuse and after 2 strikes answers
    # GOAWAY ENHANCE_YOUR_CALM "too_many_pings": measured here with pings every 200 ms,
    # a default server sends that GOAWAY after the 4th ping (0.8 s); at EMQX's 60 s that
    # is an idle connection torn down every ~3 minutes. tests/test_exhook_server.py checks
    # both. With these options every PING is simply acknowledged.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),  # 0: never GOAWAY because of pings
    # A second process on the same port must fail to start, not silently share it
    # (EXHOOK_PROCESSES > 1 turns it on for its own processes: see server_options).
    ("grpc.so_reuseport", 0),
    # gRPC core queues calls the application has not picked up yet and, past a soft
    # limit (default 1,000; 3,000 hard), refuses new ones at once (status CANCELLED,
    # never seen by the hook; EMQX then applies failed_action = deny). With the
    # defaults a 10,000-CONNECT storm had 6,700 calls refused that way. One process
    # answers ~2,000 calls/s in a storm (bench/README.md), so these limits let in what
    # it can answer explicitly within EMQX's 5 s; refusing the rest at once beats
    # answering after EMQX has given up (measured: with 20,000/40,000 every call reached
    # the hook, and up to 4,400 of 10,000 answers came after the deadline).
    ("grpc.server.max_pending_requests", PENDING_CALLS_SOFT_LIMIT),
    ("grpc.server.max_pending_requests_hard_limit", PENDING_CALLS_HARD_LIMIT),
)


def server_options(settings: ExhookSettings) -> tuple[tuple[str, int], ...]:
    """SERVER_OPTIONS, with SO_REUSEPORT on when EXHOOK_PROCESSES > 1: then every
    process binds the same port and the kernel spreads EMQX's connections over them."""
    if settings.processes <= 1:
        return SERVER_OPTIONS
    return tuple(
        (name, 1 if name == "grpc.so_reuseport" else value) for name, value in SERVER_OPTIONS
    )


_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _target(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class GrpcServer:
    """A built, not yet started, gRPC server and its health servicer."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    tls: bool

    async def set_serving(self, serving: bool) -> None:
        status = _SERVING if serving else _NOT_SERVING
        for service in ("", SERVICE_NAME):
            await self.health.set(service, status)

    async def start(self) -> None:
        await self.set_serving(False)
        await self.server.start()

    async def stop(self, grace: float | None) -> None:
        """NOT_SERVING for good, refuse new calls, let in-flight ones finish within grace."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


def create_server(
    settings: ExhookSettings,
    index: TenantIndex,
    verifier: Verifier,
    metrics: ExhookMetrics,
    *,
    clock: Clock = utc_clock,
    options: tuple[tuple[str, int], ...] | None = None,
    lookup: StoreLookup | None = None,
    settings_check: EmqxSettingsCheck | None = None,
) -> GrpcServer:
    """Build the server and bind `settings.addr` (TLS when cert and key are set);
    `options` default to `server_options(settings)`."""
    server = grpc.aio.server(options=server_options(settings) if options is None else options)
    provider = HookProvider(
        settings=settings,
        index=index,
        verifier=verifier,
        metrics=metrics,
        clock=clock,
        lookup=lookup,
        settings_ok=(lambda: True) if settings_check is None else (lambda: settings_check.ok),
    )
    add_to_server(provider, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    target = _target(settings.addr)
    tls = settings.read_tls()
    try:
        if tls is None:
            port = server.add_insecure_port(target)
        else:
            port = server.add_secure_port(target, grpc.ssl_server_credentials([tls]))
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {target}: {exc}") from None
    if port == 0:
        raise OSError(f"cannot listen on {target}")
    return GrpcServer(server, port, health_servicer, tls is not None)


Attachment = Callable[["ExhookRuntime"], AbstractAsyncContextManager[object]]
"""Builds more work that lives inside the runtime from it (e.g. the tenant lifecycle,
which needs `runtime.index` and `runtime.sync`). Built before the index sync starts (so
index listeners added on construction hear the first listing), entered once it runs,
exited after the gRPC server has stopped."""


class ExhookRuntime:
    """`async with ExhookRuntime(settings, store) as rt:` runs the whole ExHook."""

    def __init__(
        self,
        settings: ExhookSettings,
        store: TenantStore,
        *,
        verify_fn: VerifyFn = verify_password,
        clock: Clock = utc_clock,
        attach: Sequence[Attachment] = (),
        settings_check: EmqxSettingsCheck | None = None,
    ) -> None:
        self.settings = settings
        self.settings_check = settings_check
        self.index = TenantIndex()
        self.sync = IndexSync(store, self.index)
        self.metrics = ExhookMetrics()
        self.verifier = Verifier(
            workers=settings.verify_workers,
            cache_size=settings.verify_cache_size,
            verify_fn=verify_fn,
        )
        self.index.add_listener(self.verifier.cache.on_index_change)
        self.lookup = StoreLookup(store, rate=settings.lookup_rate)
        self.metrics.watch(self.index, self.verifier, self.sync)
        self._clock = clock
        self._attach = tuple(attach)
        self._stack = contextlib.AsyncExitStack()
        self._stopping = False
        self.grpc: GrpcServer | None = None
        self.http_port = 0

    @property
    def grpc_port(self) -> int:
        return 0 if self.grpc is None else self.grpc.port

    def ready(self) -> bool:
        """Ready once the index has synced and while EMQX's settings are right (when they
        are checked), until shutdown begins."""
        check = self.settings_check
        return self.index.synced and not self._stopping and (check is None or check.ok)

    async def __aenter__(self) -> ExhookRuntime:
        # Started in this order, stopped in reverse by the exit stack: readiness off
        # first, then gRPC (in-flight calls finish), HTTP, the sync task, the verifier.
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(asyncio.to_thread, self.verifier.close)
            attached = [make(self) for make in self._attach]  # their index listeners first
            await stack.enter_async_context(self.sync)
            for context in attached:
                await stack.enter_async_context(context)
            await self._start_http(stack)
            if self.settings_check is not None:  # checked once before the first CONNECT
                await stack.enter_async_context(self.settings_check)
            self.grpc = create_server(
                self.settings,
                self.index,
                self.verifier,
                self.metrics,
                clock=self._clock,
                lookup=self.lookup,
                settings_check=self.settings_check,
            )
            await self.grpc.start()
            stack.push_async_callback(self._stop_grpc, self.grpc)
            ready_task = asyncio.create_task(self._announce_ready(), name="exhook-readiness")
            stack.push_async_callback(cancel_and_wait, ready_task)
            stack.callback(self._begin_shutdown)
            log.info(
                "exhook listening: gRPC %s:%d (%s), HTTP %s:%d",
                self.settings.addr[0],
                self.grpc.port,
                "TLS" if self.grpc.tls else "h2c",
                self.settings.http_addr[0],
                self.http_port,
            )
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()
        log.info("exhook stopped")

    def _begin_shutdown(self) -> None:
        self._stopping = True
        log.info("exhook shutting down (grace %.1fs)", self.settings.shutdown_grace)

    async def _stop_grpc(self, server: GrpcServer) -> None:
        await server.stop(self.settings.shutdown_grace)

    async def _start_http(self, stack: contextlib.AsyncExitStack) -> None:
        app = create_http_app(ready=self.ready, registry=self.metrics.registry)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        host, port = self.settings.http_addr
        site = web.TCPSite(runner, host, port, reuse_port=False)
        await site.start()
        self.http_port = int(runner.addresses[0][1])

    async def _announce_ready(self) -> None:
        await self.sync.wait_synced()
        # The first listing is the bulk of what this process keeps for good (every
        # tenant, and every module loaded by now): move it out of the cyclic GC's
        # reach. Measured at 100k tenants: one full collection paused the loop ~90 ms
        # (p99 of warm CONNECTs 11.8 ms -> 9.4 ms without those pauses).
        gc.freeze()
        if self.grpc is not None:
            await self.grpc.set_serving(True)
        log.info("tenant index synced (%d tenants): serving", len(self.index))
