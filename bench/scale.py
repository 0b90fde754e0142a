"""Cost as tenants grow: ExHook index memory per tenant, time to first sync (embedded
store and the Kubernetes stand-in through the real KubernetesStore), and warm
authenticate latency at each size (it must stay flat).

Sizes: 1k, 10k, 100k (`--sizes`). Tenants are bulk-inserted with one shared argon2 hash.
- memory: tracemalloc, from `store.list()` on: bytes still held once the listing is
  dropped, i.e. what the index keeps (Tenant records with their own strings and
  datetimes, the dicts, the sorted expiry list), per tenant;
- first sync: a fresh store + TenantIndex + IndexSync until synced (this process,
  pinned to CPU 0). For Kubernetes the stand-in (tests/fakes) runs in its own process on
  CPU 1, serving pages of 500; its own cost (Python, O(n) per page) dominates there, so
  our process's CPU during the sync is reported apart. Sizes whose stand-in setup would
  exceed `--kube-budget` seconds (extrapolated) are skipped and said so;
- warm latency: the ExHook (CPU 0) on the embedded store of that size, 1,000 of its
  tenants reconnecting (primed first) in an open loop at `--rate`/s from CPU 1.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.common import (
    GENERATOR_CPUS,
    SERVER_CPUS,
    Report,
    ServerProcess,
    common_args,
    credentials,
    finish,
    load_row,
    pin,
    seed_local,
    seed_tenants,
    self_cpu_seconds,
    write_credentials,
)
from bench.grpcload import run_load
from tenants.index import IndexSync, TenantIndex
from tenants.local_store import LocalStore
from tenants.store import TenantStore


async def first_sync(store: TenantStore) -> tuple[float, float, int]:
    """(seconds, CPU seconds of this process, tenants) until a fresh index is synced."""
    index = TenantIndex()
    cpu0, started = self_cpu_seconds(), time.perf_counter()
    async with IndexSync(store, index) as sync:
        if not await sync.wait_synced(600):
            raise RuntimeError("the index did not sync")
        elapsed = time.perf_counter() - started
        cpu = self_cpu_seconds() - cpu0
    return elapsed, cpu, len(index)


async def index_bytes(store: TenantStore) -> tuple[int, int]:
    """(bytes retained by a TenantIndex holding the store's listing, tenants)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        listing = await store.list()
        index = TenantIndex()
        index.replace(listing)
        del listing
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before, len(index)


async def embedded(data: Path) -> tuple[float, float, int, int]:
    store = LocalStore(data)
    try:
        seconds, cpu, count = await first_sync(store)
    finally:
        await store.close()
    # Index memory: traced from the listing on; what stays once the listing is dropped.
    store = LocalStore(data)
    try:
        retained, _ = await index_bytes(store)
    finally:
        await store.close()
    return seconds, cpu, count, retained


async def kubernetes(url: str) -> tuple[float, float, int]:
    from tenants.kubernetes_api import kubernetes_api_client
    from tenants.kubernetes_store import KubernetesStore

    store = KubernetesStore(kubernetes_api_client(url), "zero")
    try:
        return await first_sync(store)
    finally:
        await store.close()


def warm_latency(data: Path, tenants: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    sample = random.Random(4).sample(tenants, min(args.hot, len(tenants)))
    tmp = data.parent
    creds = credentials(sample)
    write_credentials(tmp / "hot", creds)
    with ServerProcess("exhook", ["--data", str(data)], cpus=SERVER_CPUS) as server:
        spec: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": server.port(),
            "credentials": str(tmp / "hot"),
            "connections": 16,
            "cpus": sorted(GENERATOR_CPUS),
        }
        primed = run_load(
            {
                **spec,
                "mode": "closed",
                "concurrency": 16,
                "warmup": 0,
                "duration": 120,
                "repeat": False,
            }
        )
        if primed["all_counts"]["allow"] != len(sample):
            raise RuntimeError(f"priming failed: {primed['all_counts']}")
        cpu0 = server.cpu_seconds()
        result = run_load(
            {**spec, "mode": "open", "rate": args.rate, "warmup": 1, "duration": args.duration}
        )
        return load_row("", result, server.cpu_seconds() - cpu0)


def run(args: argparse.Namespace) -> Report:
    report = Report("scale: index memory, first sync, warm latency by tenant count")
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    own = frozenset(os.sched_getaffinity(0))
    flat_base: float | None = None
    kube_last: tuple[int, float, float] | None = None  # (n, sync s, setup s) measured
    for n in args.sizes:
        tenants = seed_tenants(n)
        data = tmp / f"store-{n}"
        asyncio.run(seed_local(data, tenants))
        pin(SERVER_CPUS)
        try:
            seconds, cpu, count, retained = asyncio.run(embedded(data))
        finally:
            pin(own)
        report.row(
            case=f"embedded store, {n} tenants",
            first_sync_s=seconds,
            sync_cpu_s=cpu,
            synced=count,
            index_bytes_per_tenant=retained / max(1, count),
            index_mib=retained / 2**20,
        )
        row = warm_latency(data, tenants, args)
        row["case"] = f"warm authenticate at {n} tenants, open loop {args.rate:.0f}/s"
        if flat_base is None:
            flat_base = float(row["p99_ms"])
        row["p99_vs_smallest"] = float(row["p99_ms"]) / max(flat_base, 1e-9)
        report.row(**row)

        estimate = 0.0
        if kube_last is not None:  # the stand-in's list is O(n^2), its setup O(n)
            last_n, last_sync, last_setup = kube_last
            estimate = last_sync * (n / last_n) ** 2 + last_setup * (n / last_n)
        if estimate > args.kube_budget:
            report.note(
                f"Kubernetes stand-in at {n} tenants skipped: about {estimate:.0f} s "
                f"extrapolated (budget {args.kube_budget:.0f} s); the stand-in's list is "
                "O(n) Python work per 500-item page"
            )
            continue
        started = time.perf_counter()
        with ServerProcess(
            "kube", ["--count", str(n)], cpus=GENERATOR_CPUS, ready_timeout=600
        ) as kube:
            pin(SERVER_CPUS)
            try:
                seconds, cpu, count = asyncio.run(kubernetes(kube.info["url"]))
            finally:
                pin(own)
        total = time.perf_counter() - started
        kube_last = (n, seconds, total - seconds)
        report.row(
            case=f"Kubernetes stand-in, {n} tenants",
            first_sync_s=seconds,
            sync_cpu_s=cpu,
            synced=count,
            setup_and_sync_s=total,
        )
    report.note(
        "first_sync_s: wall time from a fresh IndexSync to synced; sync_cpu_s: this "
        "process's CPU meanwhile (the store client, decoding, the index); warm latency: "
        f"{args.hot} hot tenants of each size, ExHook on CPU 0, generator on CPU 1"
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    common_args(parser)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--rate", type=float, default=1000.0, help="warm calls/s")
    parser.add_argument("--hot", type=int, default=1000, help="tenants reconnecting")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--kube-budget", type=float, default=60.0)
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.rate, args.hot, args.duration = [200], 200.0, 50, 0.5
    finish(run(args), args.json)


if __name__ == "__main__":
    main()
