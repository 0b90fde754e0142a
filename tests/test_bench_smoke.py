"""The benchmarks (bench/) still run: each one's --quick mode, all at once, as subprocesses.

Only that they finish and print their figures: no timing is asserted (bench/README.md
has the real runs and what they mean)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

EXPECTED = {
    "warm_auth": ["throughput=", "p50_ms=", "p99_ms=", "gen_cpu=", "server_cpu=", "ratio=", "goal"],
    "cold_auth": [
        "throughput=",
        "p50_ms=",
        "p99_ms=",
        "gen_cpu=",
        "ratio=",
        "late_over_5s=",
        "goal",
    ],
    "manager_post": ["throughput=", "p50_ms=", "p99_ms=", "gen_cpu=", "ratio=", "goal"],
    "scale": ["first_sync_s=", "index_bytes_per_tenant=", "p99_ms=", "Kubernetes stand-in"],
    "api_key_check": ["case=bootstrap_right", "case=unknown", "p50_ms=", "ratio=", "goal"],
    "publish_calls": ["hook_calls=0", "calls_per_publish=", "goal MET"],
}


@pytest.mark.timeout(120)
def test_every_benchmark_runs_in_quick_mode(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    running = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"bench.{name}", "--quick", "--json", str(tmp_path / name)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in EXPECTED
    }
    for name, process in running.items():
        out, err = process.communicate(timeout=110)
        assert process.returncode == 0, f"bench.{name} failed:\n{err[-3000:]}"
        for figure in EXPECTED[name]:
            assert figure in out, f"bench.{name} did not print {figure!r}:\n{out}"
        assert (tmp_path / name).read_text().startswith("{")
