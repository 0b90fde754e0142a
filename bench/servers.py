"""The servers the benchmarks run in their own processes: `python -m bench.servers KIND`.

Each pins itself (`--cpus`), listens on 127.0.0.1 (port 0: the OS picks), prints one
line `READY port=<p> ... pids=<pid,...>` and runs until its stdin is closed.

- `exhook`: the production ExHook (exhook.main's composition: runtime + lifecycle,
  no EMQX API) on an embedded store directory.
- `provider`: only the HookProvider (and gRPC health) on the ExHook's server options.
- `noop`: a grpc.aio server on the same proto and the same server options that answers
  every `OnClientAuthenticate` with STOP_AND_RETURN true at once (the warm baseline).
- `manager`: the production manager on an embedded store (settings from the environment).
- `trivial-http`: an aiohttp app whose POST handler answers a small JSON 201 at once.
- `kube`: the Kubernetes API stand-in (tests/fakes) holding `--count` tenant Secrets.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web

from bench.common import parse_cpus, pin, seed_tenants
from exhook.lifecycle import Lifecycle
from exhook.rpc import SERVICE_NAME
from exhook.server import SERVER_OPTIONS, ExhookRuntime
from exhook.settings import ExhookSettings
from exhook.wire import exhook_pb2 as pb
from tenants.local_store import LocalStore
from tenants.secret_format import tenant_to_secret


def ready(**values: object) -> None:
    if os.environ.get("BENCH_GC_FREEZE"):
        import gc

        gc.freeze()
    if os.environ.get("BENCH_GC_STATS"):
        _gc_stats()
    values.setdefault("pids", os.getpid())
    print("READY " + " ".join(f"{k}={v}" for k, v in values.items()), flush=True)


def _gc_stats() -> None:
    """Print (to stderr, at exit) the time spent in each GC generation."""
    import atexit
    import gc
    import time

    spent = [0.0, 0.0, 0.0]
    runs = [0, 0, 0]
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            spent[info["generation"]] += time.perf_counter() - started[0]
            runs[info["generation"]] += 1

    gc.callbacks.append(callback)
    atexit.register(
        lambda: print(f"gc runs {runs} seconds {[round(s, 3) for s in spent]}", file=sys.stderr)
    )


async def until_stdin_closes() -> None:
    await asyncio.to_thread(sys.stdin.read)


async def run_noop(args: argparse.Namespace) -> None:
    answer = pb.ValuedResponse(type=pb.ValuedResponse.STOP_AND_RETURN, bool_result=True)

    async def authenticate(request: pb.ClientAuthenticateRequest, context: Any) -> Any:
        return answer

    options = SERVER_OPTIONS
    if args.processes > 1:  # the same options EXHOOK_PROCESSES gives the ExHook
        options = tuple((k, 1 if k == "grpc.so_reuseport" else v) for k, v in options)
    server = grpc.aio.server(options=options)
    handler = grpc.unary_unary_rpc_method_handler(
        authenticate,
        request_deserializer=pb.ClientAuthenticateRequest.FromString,
        response_serializer=pb.ValuedResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE_NAME, {"OnClientAuthenticate": handler}),)
    )
    if os.environ.get("BENCH_NOOP_HEALTH"):  # to measure what registering health costs
        from grpc_health.v1 import health, health_pb2_grpc

        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    await server.start()
    ready(port=port)
    await until_stdin_closes()
    await server.stop(0.5)


async def run_exhook(args: argparse.Namespace) -> None:
    store = LocalStore(Path(args.data))
    settings = ExhookSettings(
        addr=("127.0.0.1", args.port),
        http_addr=("127.0.0.1", 0),
        verify_workers=args.workers,
        shutdown_grace=0.5,
        processes=args.processes,
    )

    def lifecycle(runtime: ExhookRuntime) -> Lifecycle:  # as exhook.main.serve does
        work = Lifecycle(store, runtime.index, runtime.sync, None, None)
        runtime.metrics.watch_lifecycle(work)
        return work

    try:
        attach = [] if os.environ.get("BENCH_NO_LIFECYCLE") else [lifecycle]
        async with ExhookRuntime(settings, store, attach=attach) as runtime:
            await runtime.sync.wait_synced()
            ready(port=runtime.grpc_port, http=runtime.http_port, tenants=len(runtime.index))
            await until_stdin_closes()
    finally:
        await store.close()


async def run_provider(args: argparse.Namespace) -> None:
    """Only the HookProvider on the ExHook's server options over an index read once: no
    sync task, lifecycle, health service or side HTTP server (to tell their cost apart)."""
    from exhook.observability import ExhookMetrics
    from exhook.server import create_server
    from exhook.verifier import Verifier
    from tenants.index import TenantIndex

    store = LocalStore(Path(args.data))
    index = TenantIndex()
    index.replace(await store.list())
    await store.close()
    settings = ExhookSettings(addr=("127.0.0.1", args.port), verify_workers=args.workers)
    verifier = Verifier(workers=settings.verify_workers, cache_size=settings.verify_cache_size)
    server = create_server(settings, index, verifier, ExhookMetrics())
    await server.start()
    ready(port=server.port, tenants=len(index))
    await until_stdin_closes()
    await server.stop(0.5)
    verifier.close()


async def run_manager(args: argparse.Namespace) -> None:
    # Imported here: the other kinds must not depend on the manager package.
    from manager.main import running_manager
    from manager.settings import ManagerSettings

    env = dict(os.environ)
    env["MANAGER_ADDR"] = f"127.0.0.1:{args.port}"
    env.setdefault("IP_HASH_KEY", "bench-ip-hash-key-0123456789")
    settings = ManagerSettings.from_environ(env)
    store = LocalStore(Path(args.data))
    try:
        async with running_manager(settings, store) as (runner, sync):
            await sync.wait_synced()
            ready(port=runner.addresses[0][1], tenants=len(sync.index))
            await until_stdin_closes()
    finally:
        await store.close()


async def run_trivial_http(args: argparse.Namespace) -> None:
    body = {"instance_id": "emqx-0000000000000000", "expires_at": "2026-01-01T00:00:00Z"}

    async def create(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(body, status=201)

    app = web.Application()
    app.router.add_post("/v1/instances", create)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    ready(port=runner.addresses[0][1])
    await until_stdin_closes()
    await runner.cleanup()


async def run_kube(args: argparse.Namespace) -> None:
    from tests.fakes.kubernetes_api import running_kubernetes_api

    async with running_kubernetes_api(retain_events=1000) as api:
        for tenant in seed_tenants(args.count):
            api.put_secret(tenant_to_secret(tenant, api.namespace))
        ready(url=api.url, count=args.count)
        await until_stdin_closes()


KINDS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "noop": run_noop,
    "exhook": run_exhook,
    "provider": run_provider,
    "manager": run_manager,
    "trivial-http": run_trivial_http,
    "kube": run_kube,
}


def supervise(args: argparse.Namespace) -> None:
    """`--processes N`: N copies of this server on one port (SO_REUSEPORT)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [args.kind, "--cpus", args.cpus, "--workers", str(args.workers)]
    argv += ["--processes", str(args.processes), "--port", str(port), "--child"]
    if args.data:
        argv += ["--data", args.data]
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.servers", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(args.processes)
    ]
    infos = []
    for child in children:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.startswith("READY"):
            raise SystemExit(f"a {args.kind} process failed to start")
        infos.append(dict(item.split("=", 1) for item in line.split()[1:]))
    first = {k: v for k, v in infos[0].items() if k != "pids"}
    ready(**first, pids=",".join(info["pids"] for info in infos))
    sys.stdin.read()
    for child in children:
        assert child.stdin is not None
        child.stdin.close()
    for child in children:
        child.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--cpus", default="0", help="CPUs to pin to, e.g. 0 or 0,1 ('' = none)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--data", help="embedded store directory (exhook, manager)")
    parser.add_argument("--workers", type=int, default=0, help="exhook VERIFY_WORKERS (0: CPUs)")
    parser.add_argument("--count", type=int, default=0, help="kube: tenant Secrets to hold")
    parser.add_argument("--processes", type=int, default=1, help="exhook, noop: processes")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.processes > 1 and not args.child:
        supervise(args)
        return
    pin(parse_cpus(args.cpus))
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(KINDS[args.kind](args))


if __name__ == "__main__":
    main()
