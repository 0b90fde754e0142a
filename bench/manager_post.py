"""Manager: `POST /v1/instances` throughput and latency, against a trivial aiohttp handler.

1. limits lifted (PER_IP_RATE=0, PER_IP_MAX_LIVE=0, MAX_LIVE_INSTANCES=0), embedded
   store: the production manager vs `bench.servers trivial-http` (an aiohttp POST handler
   answering a small JSON 201 at once). Goal: >= 0.5 x the trivial handler.
   A second baseline is what every POST must pay however fast the web layer is: one
   argon2id hash (m=2 MiB t=1 p=1) on the manager's one pinned core.
2. the live-instance cap checked on every POST (MAX_LIVE_INSTANCES set) with `--live`
   (100k) unexpired tenants in the index, vs the same store with the cap off.

Manager on CPU 0, generator (HTTP/1.1 keep-alive, closed loop) on CPU 1.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    GENERATOR_CPUS,
    SERVER_CPUS,
    Report,
    ServerProcess,
    common_args,
    finish,
    load_row,
    pin,
    ratio,
    run_json_subprocess,
    seed_local,
    seed_tenants,
)
from tenants.credentials import new_password
from tenants.hashing import hash_password

GOAL_RATIO = 0.5
UNLIMITED = {"PER_IP_RATE": "0", "PER_IP_MAX_LIVE": "0", "MAX_LIVE_INSTANCES": "0"}


def measure(server: ServerProcess, args: argparse.Namespace, label: str) -> dict[str, Any]:
    spec = {
        "host": "127.0.0.1",
        "port": server.port(),
        "path": "/v1/instances",
        "body": {"tag": "bench"},
        "connections": args.connections,
        "warmup": args.warmup,
        "duration": args.duration,
        "cpus": sorted(GENERATOR_CPUS),
    }
    cpu0 = server.cpu_seconds()
    result = run_json_subprocess("bench.httpload", spec, timeout=args.duration + 120)
    return load_row(label, result, server.cpu_seconds() - cpu0)


def hash_rate(seconds: float) -> float:
    """argon2id hashes/s on SERVER_CPUS (the manager's core), in this process."""
    before = pin_self(SERVER_CPUS)
    try:
        count, stop = 0, time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < stop:
            hash_password(new_password())
            count += 1
        return count / (time.perf_counter() - started)
    finally:
        pin_self(before)


def pin_self(cpus: frozenset[int]) -> frozenset[int]:
    import os

    before = frozenset(os.sched_getaffinity(0))
    pin(cpus)
    return before


def run(args: argparse.Namespace) -> Report:
    report = Report("manager POST /v1/instances vs trivial aiohttp handler")
    tmp = Path(tempfile.mkdtemp(prefix="bench-manager-"))
    with ServerProcess("trivial-http", cpus=SERVER_CPUS) as trivial:
        base = measure(trivial, args, "trivial aiohttp POST handler (baseline)")
    report.row(**base)
    with ServerProcess(
        "manager", ["--data", str(tmp / "empty")], cpus=SERVER_CPUS, env=UNLIMITED
    ) as manager:
        ours = measure(manager, args, "manager POST, limits lifted, embedded store")
    ours["ratio"] = ratio(ours["throughput"], base["throughput"])
    report.row(**ours)
    hashes = hash_rate(args.hash_seconds)
    report.row(
        case="argon2id hash alone on the manager's core (floor per POST)",
        throughput=hashes,
        p50_ms=1000 / hashes,
    )
    ours_vs_hash = ratio(ours["throughput"], hashes)
    report.goal(
        f"throughput >= {GOAL_RATIO} x trivial handler",
        ours["throughput"] >= GOAL_RATIO * base["throughput"],
        f"{ours['throughput']:.0f}/s vs {base['throughput']:.0f}/s = {ours['ratio']:.2f}; "
        f"vs argon2id hash alone {hashes:.0f}/s = {ours_vs_hash:.2f}",
    )

    # The live-instance cap at scale.
    asyncio.run(seed_local(tmp / "live", seed_tenants(args.live)))
    rows = {}
    for label, cap in (("cap off", "0"), ("MAX_LIVE_INSTANCES set", str(10 * args.live))):
        env = {**UNLIMITED, "MAX_LIVE_INSTANCES": cap}
        with ServerProcess(
            "manager", ["--data", str(tmp / "live")], cpus=SERVER_CPUS, env=env
        ) as manager:
            rows[cap] = measure(manager, args, f"manager POST, {args.live} live, {label}")
        report.row(**rows[cap])
    capped, free = rows[str(10 * args.live)], rows["0"]
    capped["ratio"] = ratio(capped["throughput"], free["throughput"])
    report.goal(
        f"the cap check costs nothing visible at {args.live} live tenants",
        capped["p99_ms"] <= 1.2 * free["p99_ms"] + 1 and capped["ratio"] >= 0.9,
        f"p99 {capped['p99_ms']:.1f} ms vs {free['p99_ms']:.1f} ms, "
        f"throughput ratio {capped['ratio']:.2f}",
    )
    report.note(
        f"{args.connections} keep-alive connections, one request in flight each; manager "
        "pinned to CPU 0 (its 2 hash threads share it), generator to CPU 1; the store "
        "fsyncs each commit (synchronous=FULL, WAL) on "
        f"{tmp} ({_fs_type(tmp)})"
    )
    return report


def _fs_type(path: Path) -> str:
    best, kind = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    common_args(parser)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--live", type=int, default=100_000)
    parser.add_argument("--hash-seconds", type=float, default=3.0)
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup, args.live, args.hash_seconds = 0.5, 0.1, 300, 0.2
        args.connections = 4
    finish(run(args), args.json)


if __name__ == "__main__":
    main()
