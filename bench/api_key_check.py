"""Management API key checks: what each branch costs (issue: bootstrap keys were
checked in 0.47 ms, stored and unknown names in 1.57 ms, so a caller could tell them
apart).

`ApiKeyService.authenticate` against the real embedded key store, with the verified
cache off (every call a first call), for each branch: a bootstrap key with the right and
a wrong secret, a stored key with the right and a wrong secret, an unknown name. The
branches are interleaved round by round so the machine's drift hits them alike; each
row is a branch's median and p99, and its ratio to the unknown name's median (the
baseline: a decoy verification). Goal: every ratio within 0.8-1.25.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Report, common_args, finish, ratio
from manager.api_keys import ApiKeyService, VerifiedCache
from manager.bootstrap_keys import BootstrapKey
from tenants.api_keys import ApiKey, Role
from tenants.hashing import hash_password
from tenants.local_api_keys import LocalApiKeyStore

BOOT_SECRET = "bench-bootstrap-secret-0123456789"
STORED_SECRET = "bench-stored-secret-0123456789"
BRANCHES = {
    "bootstrap_right": ("boot", BOOT_SECRET),
    "bootstrap_wrong": ("boot", BOOT_SECRET + "x"),
    "stored_right": ("stored", STORED_SECRET),
    "stored_wrong": ("stored", STORED_SECRET + "x"),
    "unknown": ("ghost", BOOT_SECRET),
}


async def measure(rounds: int, directory: Path) -> dict[str, list[float]]:
    store = LocalApiKeyStore(directory / "keys.sqlite")
    try:
        await store.create(
            ApiKey("stored", Role.VIEWER, hash_password(STORED_SECRET), datetime.now(UTC))
        )
        with ThreadPoolExecutor(max_workers=1) as hasher:
            service = ApiKeyService(
                [BootstrapKey.of("boot", BOOT_SECRET, Role.ADMINISTRATOR)],
                store,
                hasher=hasher,
                cache=VerifiedCache(max_size=0),
            )
            times: dict[str, list[float]] = {branch: [] for branch in BRANCHES}
            for _ in range(rounds):
                for branch, (name, secret) in BRANCHES.items():
                    start = time.perf_counter()
                    await service.authenticate(name, secret)
                    times[branch].append((time.perf_counter() - start) * 1000)
            return times
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    common_args(parser)
    parser.add_argument("--rounds", type=int, default=400)
    args = parser.parse_args()
    rounds = 20 if args.quick else args.rounds
    with tempfile.TemporaryDirectory() as directory:
        times = asyncio.run(measure(rounds, Path(directory)))
    report = Report("api key check: cost per branch (verified cache off)")
    baseline = statistics.median(times["unknown"])
    worst = 1.0
    for branch, samples in times.items():
        median = statistics.median(samples)
        p99 = sorted(samples)[int(len(samples) * 0.99) - 1]
        report.row(case=branch, p50_ms=median, p99_ms=p99, ratio=ratio(median, baseline))
        worst = max(worst, ratio(median, baseline), ratio(baseline, median))
    report.goal("every branch within 0.8-1.25x of an unknown name", worst <= 1.25, f"{worst:.2f}")
    report.note(f"{rounds} rounds, branches interleaved; ratio = median / unknown's median")
    finish(report, args.json)


if __name__ == "__main__":
    main()
