"""Run every benchmark once, one after the other, and write the results table
(`bench/results.md` by default) from their JSON: `python -m bench.run_all`.

`--quick` runs each benchmark's quick mode (a few seconds each, for checking the tooling).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import ROOT, machine

RUNS: list[tuple[str, list[str]]] = [
    ("warm_auth", []),
    ("warm_auth", ["--processes", "2"]),
    ("cold_auth", []),
    ("manager_post", []),
    ("scale", []),
    ("api_key_check", []),
    ("publish_calls", []),
]
PUBLISH_COLUMNS = [
    ("server", "server"),
    ("hooks", "hooks registered"),
    ("publishes", "publishes"),
    ("hook_calls", "hook calls"),
    ("calls_per_publish", "calls / publish"),
]
COLUMNS = [
    ("case", "case"),
    ("throughput", "throughput /s"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("ratio", "ratio"),
    ("gen_cpu", "generator CPU (cores)"),
    ("server_cpu", "server CPU (cores)"),
]
SCALE_COLUMNS = [
    ("case", "case"),
    ("first_sync_s", "first sync s"),
    ("sync_cpu_s", "sync CPU s"),
    ("index_bytes_per_tenant", "index bytes/tenant"),
    ("throughput", "throughput /s"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("p99_vs_smallest", "p99 vs 1k"),
    ("gen_cpu", "generator CPU"),
]


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    return str(value)


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> list[str]:
    lines = [
        "| " + " | ".join(title for _, title in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in rows:
        lines.append("| " + " | ".join(cell(row.get(key)) for key, _ in columns) + " |")
    return lines


def render(reports: list[dict[str, Any]], commands: list[str]) -> str:
    info = machine()
    out = [
        "# Benchmark results",
        "",
        f"Measured {info['date']} in one run of `python -m bench.run_all` on this machine: "
        f"{info['cpus']} cores ({info['cpu_model']}), Python {info['python']}, "
        f"Linux {info['kernel']}. Server pinned to CPU 0 and load generator to CPU 1 unless "
        "a row says otherwise; ratios are against the baseline measured in the same run. "
        "Generator / server CPU: cores busy during the run (1.0 = one core).",
        "",
    ]
    for report, command in zip(reports, commands, strict=True):
        out += [f"## {report['benchmark']}", "", f"`{command}`", ""]
        columns = SCALE_COLUMNS if report["benchmark"].startswith("scale") else COLUMNS
        if report["benchmark"].startswith("publish_calls"):
            columns = PUBLISH_COLUMNS
        out += table(report["rows"], columns)
        out.append("")
        for goal in report["goals"]:
            verdict = "met" if goal["met"] else "**not met**"
            out.append(f"- goal {verdict}: {goal['goal']} ({goal['detail']})")
        for note in report["notes"]:
            out.append(f"- {note}")
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.md")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-all-"))
    reports, commands = [], []
    for i, (module, extra) in enumerate(RUNS):
        flags = [*extra, *(["--quick"] if args.quick else [])]
        path = tmp / f"{i}-{module}.json"
        command = " ".join([".venv/bin/python -m", f"bench.{module}", *flags])
        print(f"-- {command}", flush=True)
        subprocess.run(
            [sys.executable, "-m", f"bench.{module}", *flags, "--json", str(path)],
            cwd=ROOT,
            check=True,
        )
        reports.append(json.loads(path.read_text()))
        commands.append(command)
    args.out.write_text(render(reports, commands) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
