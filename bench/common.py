"""What every benchmark shares: CPU pinning and accounting, percentiles, server
subprocesses, seeding tenant stores, and printing / JSON output of the figures.

Pinning on this 2-core machine: the server under test runs on CPU 0 (`SERVER_CPUS`),
the load generator on CPU 1 (`GENERATOR_CPUS`), unless a benchmark says otherwise.
Each process pins itself with `os.sched_setaffinity` before it starts any thread.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tenants.credentials import new_instance_id, new_password
from tenants.hashing import hash_password
from tenants.local_format import encode_record
from tenants.local_store import LocalStore
from tenants.record import Tenant, utc_now

ROOT = Path(__file__).resolve().parent.parent
SERVER_CPUS = frozenset({0})
GENERATOR_CPUS = frozenset({1})
_TICK = os.sysconf("SC_CLK_TCK")


# -- CPU ---------------------------------------------------------------------------


def pin(cpus: Sequence[int] | frozenset[int] | None) -> None:
    """Pin this process (and the threads it starts later) to `cpus`, if they exist."""
    if not cpus:
        return
    available = os.sched_getaffinity(0) | set(range(os.cpu_count() or 1))
    wanted = {c for c in cpus if c in available}
    if wanted:
        os.sched_setaffinity(0, wanted)


def parse_cpus(text: str) -> frozenset[int]:
    """`"0"`, `"0,1"` or `""` (no pinning)."""
    return frozenset(int(c) for c in text.split(",") if c.strip())


def cpus_arg(cpus: frozenset[int] | None) -> str:
    return ",".join(str(c) for c in sorted(cpus or ()))


def proc_cpu_seconds(pid: int) -> float:
    """user + system CPU of every thread of `pid` so far (/proc/<pid>/stat)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


# -- figures -------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


@dataclass
class Latencies:
    """Latency summary in milliseconds."""

    count: int
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latencies:
        values = sorted(seconds)
        ms = 1000.0
        return cls(
            count=len(values),
            p50=percentile(values, 50) * ms,
            p90=percentile(values, 90) * ms,
            p99=percentile(values, 99) * ms,
            max=(values[-1] * ms) if values else 0.0,
        )


@dataclass
class Report:
    """One benchmark's output: named figures, printed as a table and kept for JSON."""

    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    goals: list[dict[str, Any]] = field(default_factory=list)

    def row(self, **values: Any) -> None:
        self.rows.append(values)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def goal(self, name: str, met: bool, detail: str) -> None:
        self.goals.append({"goal": name, "met": met, "detail": detail})

    def as_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.name,
            "machine": machine(),
            "rows": self.rows,
            "goals": self.goals,
            "notes": self.notes,
        }

    def print(self) -> None:
        print(f"== {self.name} ==")
        for row in self.rows:
            print("  " + "  ".join(f"{k}={_fmt(v)}" for k, v in row.items()))
        for goal in self.goals:
            print(
                f"  goal {'MET' if goal['met'] else 'NOT MET'}: {goal['goal']} ({goal['detail']})"
            )
        for text in self.notes:
            print(f"  note: {text}")
        sys.stdout.flush()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def ratio(ours: float, baseline: float) -> float:
    return ours / baseline if baseline else 0.0


def common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a few seconds, tiny sizes")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")


def finish(report: Report, json_path: Path | None) -> None:
    report.print()
    if json_path is not None:
        json_path.write_text(json.dumps(report.as_json(), indent=2) + "\n")


# -- tenants -------------------------------------------------------------------------

SHARED_PASSWORD = new_password()  # one password for every seeded tenant (see seed_local)


@dataclass(frozen=True)
class Credential:
    instance_id: str
    password: str


def seed_tenants(count: int, *, ttl: timedelta = timedelta(days=7)) -> list[Tenant]:
    """`count` tenants sharing SHARED_PASSWORD's hash (one argon2 hash, not `count`).

    Every verify still costs a full argon2 verify: the verified-credential cache is
    keyed by instance id, so each tenant's first CONNECT pays one."""
    password_hash = hash_password(SHARED_PASSWORD)
    now = utc_now()
    return [
        Tenant(
            instance_id=new_instance_id(),
            password_hash=password_hash,
            created_at=now,
            expires_at=now + ttl,
            ip_hash=f"ip{i % 997}",
        )
        for i in range(count)
    ]


async def seed_local(data_dir: Path, tenants: Sequence[Tenant]) -> None:
    """Bulk-insert `tenants` into an embedded store at `data_dir` (its own schema, one
    transaction: what `count` creates through the store would write, minus the fsyncs)."""
    store = LocalStore(data_dir)
    await store.ping()  # creates the schema
    await store.close()
    conn = sqlite3.connect(data_dir / "tenants.sqlite3", isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        start = int(conn.execute("SELECT coalesce(max(revision), 0) FROM changes").fetchone()[0])
        records = [(t.instance_id, encode_record(t)) for t in tenants]
        conn.executemany(
            "INSERT INTO changes (revision, type, instance_id, record) VALUES (?, 'ADDED', ?, ?)",
            [(start + i + 1, iid, rec) for i, (iid, rec) in enumerate(records)],
        )
        conn.executemany(
            "INSERT INTO tenants (instance_id, revision, record) VALUES (?, ?, ?)",
            [(iid, start + i + 1, rec) for i, (iid, rec) in enumerate(records)],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def credentials(tenants: Sequence[Tenant]) -> list[Credential]:
    return [Credential(t.instance_id, SHARED_PASSWORD) for t in tenants]


def write_credentials(path: Path, creds: Sequence[Credential]) -> None:
    path.write_text("".join(f"{c.instance_id} {c.password}\n" for c in creds))


def read_credentials(path: Path) -> list[Credential]:
    out = []
    for line in path.read_text().splitlines():
        instance_id, password = line.split()
        out.append(Credential(instance_id, password))
    return out


# -- server subprocesses -----------------------------------------------------------------


class ServerProcess:
    """`python -m bench.servers <kind> ...` on `cpus`; ready once it prints `READY k=v ...`."""

    def __init__(
        self,
        kind: str,
        args: Sequence[str] = (),
        *,
        cpus: frozenset[int] | None = SERVER_CPUS,
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 120.0,
    ) -> None:
        self.kind = kind
        command = [sys.executable, "-m", "bench.servers", kind, "--cpus", cpus_arg(cpus), *args]
        full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=full_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.info: dict[str, str] = {}
        deadline = time.monotonic() + ready_timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"bench server {kind} exited before it was ready")
            if line.startswith("READY"):
                self.info = dict(item.split("=", 1) for item in line.split()[1:])
                break
        else:
            self.stop()
            raise RuntimeError(f"bench server {kind} was not ready in {ready_timeout}s")
        self.pids = [int(p) for p in self.info.get("pids", str(self.proc.pid)).split(",")]

    def port(self, name: str = "port") -> int:
        return int(self.info[name])

    def cpu_seconds(self) -> float:
        return sum(proc_cpu_seconds(pid) for pid in self.pids)

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # the server exits when its stdin closes
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_json_subprocess(module: str, spec: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """Run `python -m <module>` with `spec` as JSON on stdin; its stdout is JSON."""
    done = subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# -- one measured load ---------------------------------------------------------------------


def load_row(
    label: str, result: Mapping[str, Any], server_cpu: float | None = None
) -> dict[str, Any]:
    """Figures of one generator run (`bench.grpcload` / `bench.httpload` result)."""
    lat = Latencies.of(result["latencies"])
    window = float(result["window"]) or 1e-9
    row: dict[str, Any] = {
        "case": label,
        "throughput": lat.count / window,
        "p50_ms": lat.p50,
        "p99_ms": lat.p99,
        "max_ms": lat.max,
        "calls": lat.count,
    }
    row.update({k: v for k, v in result["counts"].items() if v})
    wall = float(result["wall"]) or 1e-9
    row["gen_cpu"] = float(result["cpu"]) / wall  # cores busy (1.0 = one core saturated)
    if server_cpu is not None:
        row["server_cpu"] = server_cpu / wall
    return row
