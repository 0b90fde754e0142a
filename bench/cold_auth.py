"""Cold authenticate: every call a credential the ExHook has never verified (argon2id
m=2 MiB t=1 p=1 paid each time), and a 10,000-tenant reconnect storm.

Baseline (the physical limit): raw `argon2` verifies of the same hash with the same
number of threads (VERIFY_WORKERS, default: the CPU count) in a plain Python process.

1. sustained: a closed loop, `--concurrency` calls in flight, each call a tenant not
   seen before; verifications/s, p50/p99. Goal: >= 500/s on this 2-core machine.
2. storm: `--storm` distinct tenants sent at once (as fast as the generator can) with
   EMQX's `grpc-timeout: 5S`. Goal: no call waits past 5 s; the ExHook sheds what it
   cannot verify in time with explicit denies (reason `overloaded`, counted from both
   the answers and the ExHook's /metrics).

The ExHook is unpinned (argon2 runs on both cores, as it would on a 2-core node); the
generator is pinned to CPU 1 and its CPU is reported. Tenants share one password hash
(hashing thousands would take minutes); the verified cache is per instance id, so
every first CONNECT of a tenant still pays a full verify.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import (
    GENERATOR_CPUS,
    ROOT,
    SHARED_PASSWORD,
    Report,
    ServerProcess,
    common_args,
    credentials,
    finish,
    load_row,
    ratio,
    seed_local,
    seed_tenants,
    write_credentials,
)
from bench.grpcload import run_load
from tenants.hashing import hash_password, verify_password

GOAL_RATE = 500.0
EMQX_TIMEOUT_MS = 5000.0


def raw_verify_rate(threads: int, seconds: float) -> dict[str, float]:
    """argon2 verifies/s with `threads` threads in this (plain) process."""
    password_hash = hash_password(SHARED_PASSWORD)
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def work(slot: int) -> None:
        while time.perf_counter() < stop:
            verify_password(password_hash, SHARED_PASSWORD)
            counts[slot] += 1

    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    return {"rate": sum(counts) / elapsed, "ms_per_verify": 1000 * elapsed * threads / sum(counts)}


def baseline_in_subprocess(threads: int, seconds: float) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.cold_auth", "--baseline-child", str(threads), str(seconds)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def overloaded_from_metrics(http_port: int) -> float:
    """zero_emqx_exhook_decisions_total{hook=client.authenticate,reason=overloaded}."""
    url = f"http://127.0.0.1:{http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("zero_emqx_exhook_decisions_total{") and 'reason="overloaded"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def run(args: argparse.Namespace) -> Report:
    report = Report("cold authenticate (argon2 on every call) vs raw argon2 verify")
    workers = args.workers
    tmp = Path(tempfile.mkdtemp(prefix="bench-cold-"))
    sustained_n = int(args.expected_rate * (args.warmup + args.duration) * 1.5) + 100
    tenants = seed_tenants(sustained_n + args.storm)
    asyncio.run(seed_local(tmp / "data", tenants))
    creds = credentials(tenants)
    write_credentials(tmp / "sustained", creds[:sustained_n])
    write_credentials(tmp / "storm", creds[sustained_n:])

    base = baseline_in_subprocess(workers, args.baseline_seconds)
    report.row(
        case=f"raw argon2 verify, {workers} threads, plain process (baseline)",
        throughput=base["rate"],
        p50_ms=base["ms_per_verify"],
    )

    spec: dict[str, Any] = {
        "host": "127.0.0.1",
        "connections": args.connections,
        "cpus": sorted(GENERATOR_CPUS),
        "repeat": False,
    }
    with ServerProcess(
        "exhook", ["--data", str(tmp / "data"), "--workers", str(workers)], cpus=None
    ) as server:
        spec["port"] = server.port()
        cpu0 = server.cpu_seconds()
        sustained = run_load(
            {
                **spec,
                "credentials": str(tmp / "sustained"),
                "mode": "closed",
                "concurrency": args.concurrency,
                "warmup": args.warmup,
                "duration": args.duration,
            }
        )
        row = load_row(
            f"exhook cold, closed loop {args.concurrency} in flight",
            sustained,
            server.cpu_seconds() - cpu0,
        )
        row["ratio"] = ratio(row["throughput"], base["rate"])
        report.row(**row)
        rate = float(row["throughput"])

        shed_before = overloaded_from_metrics(server.port("http"))
        cpu0 = server.cpu_seconds()
        storm = run_load(
            {
                **spec,
                "credentials": str(tmp / "storm"),
                "mode": "storm",
                "storm_wait": args.storm_wait,
                "decode": True,
            }
        )
        shed = overloaded_from_metrics(server.port("http")) - shed_before
        storm_row = load_row(
            f"storm: {args.storm} new tenants at once", storm, server.cpu_seconds() - cpu0
        )
        storm_row["throughput"] = storm_row["calls"] / float(storm["window"])
        storm_row["overloaded_metric"] = shed
        storm_row["late_over_5s"] = sum(1 for s in storm["latencies"] if s * 1000 > EMQX_TIMEOUT_MS)
        storm_row["drain_s"] = float(storm["window"])
        if storm["errors"]:
            report.note(f"storm errors: {storm['errors']}")
        report.row(**storm_row)

    report.goal(
        f">= {GOAL_RATE:.0f} verifications/s",
        rate >= GOAL_RATE,
        f"{rate:.0f}/s = {row['ratio']:.2f} x raw argon2 ({base['rate']:.0f}/s)",
    )
    answered = storm_row.get("allow", 0) + storm_row.get("deny", 0)
    report.goal(
        f"storm of {args.storm}: no call waits past EMQX's 5 s",
        storm_row["late_over_5s"] == 0 and not storm_row.get("unanswered"),
        f"max {storm_row['max_ms']:.0f} ms, {storm_row['late_over_5s']} late, "
        f"{storm_row.get('unanswered', 0)} unanswered",
    )
    report.goal(
        f"storm of {args.storm}: every shed is an explicit deny",
        answered == args.storm,
        f"{storm_row.get('allow', 0)} allowed, {storm_row.get('deny', 0)} denied "
        f"(overloaded per /metrics: {shed:.0f}), {storm_row.get('error', 0)} refused by "
        "gRPC itself (EMQX applies failed_action = deny to those)",
    )
    report.note(
        f"VERIFY_WORKERS={workers}; ExHook unpinned (both cores), generator pinned to CPU 1; "
        f"{args.connections} HTTP/2 connections; defaults VERIFY_QUEUE_TIMEOUT_SECONDS=2, "
        "EXHOOK_DEADLINE_MARGIN_SECONDS=0.25"
    )
    return report


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--baseline-child":
        print(json.dumps(raw_verify_rate(int(sys.argv[2]), float(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    common_args(parser)
    parser.add_argument("--workers", type=int, default=2, help="VERIFY_WORKERS (and threads)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--baseline-seconds", type=float, default=5.0)
    parser.add_argument("--expected-rate", type=float, default=1200.0, help="sizes the tenants")
    parser.add_argument("--storm", type=int, default=10_000)
    parser.add_argument("--storm-wait", type=float, default=15.0)
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup, args.baseline_seconds = 1.0, 0.2, 0.5
        args.storm, args.connections, args.concurrency = 200, 4, 8
    finish(run(args), args.json)


if __name__ == "__main__":
    main()
