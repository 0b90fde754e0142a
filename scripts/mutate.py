"""Mutation testing of the security core: does each module's own test file notice a bug?

    scripts/mutate [--fail-under PERCENT] [MODULE.py ...]

For each module (default: MODULES below, in order) mutmut changes the code one small
edit at a time (a comparison flipped, a guard removed, a constant changed) and runs the
module's mirrored tests (MODULES maps each module to them) against every mutant. A
mutant the tests fail on is killed; one they pass on survived: a bug the tests would let
through, unless the change makes no difference (an equivalent mutant, listed with the
reason in EQUIVALENT). The kill rate is killed / (mutants - equivalent).

Each module runs in a fresh copy of the working tree (tracked and untracked files, no
ignored ones) with its own `[tool.mutmut]` section, so the checkout is never touched.
Survivors are printed as diffs. Slow (minutes per module) and not part of scripts/test.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Module -> the test files that pin it (those of them that exist are run).
MODULES: dict[str, tuple[str, ...]] = {
    "exhook/decision.py": ("tests/test_exhook_decision.py",),
    "manager/client_ip.py": ("tests/test_client_ip.py", "tests/test_callers.py"),
    "manager/forwarded.py": ("tests/test_forwarded.py", "tests/test_client_ip.py"),
    "manager/networks.py": ("tests/test_networks.py",),
    "manager/bodies.py": ("tests/test_bodies.py", "tests/test_connections.py"),
    "tenants/secret_format.py": ("tests/test_secret_format.py", "tests/test_credential_records.py"),
    "tenants/credential_format.py": (
        "tests/test_credential_format.py",
        "tests/test_credential_records.py",
    ),
    "tenants/record.py": ("tests/test_record.py",),
    "tenants/local_format.py": ("tests/test_local_format.py",),
}

# Survivors that cannot change behaviour: (module, function, the mutated line as it reads
# after the mutation, stripped) -> why. The mutated line, not mutmut's mutant number,
# identifies a mutant, so unrelated edits elsewhere in the function keep the entry valid.
_FALSY = "None is as falsy as False wherever the value is read"
EQUIVALENT: dict[tuple[str, str, str], str] = {
    ("manager/client_ip.py", "client_of", 'client: Hop | None = parse_address(peer or "XXXX")'): (
        '"" and "XXXX" are both no address: None either way'
    ),
    (
        "manager/networks.py",
        "_masked",
        "return str(ipaddress.ip_network((address, length), strict=None))",
    ): _FALSY,
    ("manager/forwarded.py", "_split_quoted", "escaped = None"): _FALSY,
    ("manager/forwarded.py", "_unquote", "escaped = None"): _FALSY,
    ("manager/forwarded.py", "_unquote", """if len(value) <= 2 or not value.endswith('"'):"""): (
        'only \'""\' differs: its empty value parses to Opaque(""), which is BROKEN'
    ),
    ("manager/forwarded.py", "_unquote", """if len(value) < 3 or not value.endswith('"'):"""): (
        'only \'""\' differs: its empty value parses to Opaque(""), which is BROKEN'
    ),
    (
        "manager/forwarded.py",
        "_is_obfuscated",
        'and all(c.isalnum() or c in "XX._-XX" for c in rest)',
    ): "X is alphanumeric anyway",
    ("manager/bodies.py", "parse_json", 'text = raw.decode("UTF-8")'): "the same codec",
    ("manager/bodies.py", "read_body", "chunk = await request.content.read(limit + 1 + size)"): (
        "a read may return more, but any byte past the limit is still a 413"
    ),
    ("manager/bodies.py", "read_body", "chunk = await request.content.read(limit + 2 - size)"): (
        "one byte more per read; any byte past the limit is still a 413"
    ),
    **{
        ("manager/bodies.py", "read_body", f"raise web.HTTPRequestEntityTooLarge({args})"): (
            "the 413's text is replaced by both error middlewares; the arguments show nowhere"
        )
        for args in (
            "max_size=None, actual_size=size",
            "max_size=None, actual_size=length",
            "max_size=limit, actual_size=None",
            "max_size=limit, ",
        )
    },
    ("manager/forwarded.py", "parse_node", 'inner, sep, after = text[1:].rpartition("]")'): (
        "no address holds a ']': the first and the last ']' of an accepted hop are the same"
    ),
}

# mutmut's exit codes per mutant (mutmut/stats.py `status_by_exit_code`, mutmut 3.8).
_KILLED = {1, 3}
_SURVIVED = {0}
_TIMEOUT = {24, -24, 152, 255, 36}
_NO_TESTS = {5, 33}
_SOURCE_DIRS = ("tenants", "manager", "exhook", "zero_emqx")


@dataclass
class Outcome:
    module: str
    killed: int = 0
    survived: int = 0
    equivalent: int = 0
    timeout: int = 0
    other: int = 0

    @property
    def total(self) -> int:
        return self.killed + self.survived + self.equivalent + self.timeout + self.other

    @property
    def kill_rate(self) -> float:
        """Killed (a timeout is a kill too) over the mutants that are not equivalent."""
        counted = self.total - self.equivalent
        return 100.0 * (self.killed + self.timeout) / counted if counted else 100.0


def _project_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],  # noqa: S607 - git from PATH
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def _copy_tree(target: Path) -> None:
    for name in _project_files():
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination)


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def _configure(work: Path, module: str, tests: list[str]) -> None:
    """Append a [tool.mutmut] section for `module` to the copy's pyproject.toml."""
    section = "\n".join(
        [
            "",
            "[tool.mutmut]",
            f"source_paths = {_toml_list(list(_SOURCE_DIRS))}",
            f"only_mutate = {_toml_list([module])}",
            f"pytest_add_cli_args_test_selection = {_toml_list(tests)}",
            'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]',
            'process_isolation = "forkserver"',  # grpc and asyncio are not fork-safe
            "use_git_change_detection = false",
            "",
        ]
    )
    with (work / "pyproject.toml").open("a", encoding="utf-8") as pyproject:
        pyproject.write(section)


def _mutmut(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - this interpreter, our own arguments
        [sys.executable, "-m", "mutmut", *args],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )


def _mutated_line(diff: str) -> str:
    """The first added line of a mutant's diff, stripped: what the mutation wrote."""
    for line in diff.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            return line[1:].strip()
    return ""


def _function_of(mutant: str) -> str:
    """`tenants.record.x_parse_time__mutmut_3` -> `parse_time`; methods keep the class:
    `tenants.record.xǁTenantǁis_live__mutmut_1` -> `Tenant.is_live`."""
    tail = mutant.rsplit(".", 1)[-1]
    tail = re.sub(r"__mutmut_\d+$", "", tail)
    if tail.startswith("xǁ"):
        return ".".join(part for part in tail[2:].split("ǁ") if part)
    return tail.removeprefix("x_")


def mutate(module: str, *, verbose: bool) -> Outcome:
    tests = [name for name in MODULES.get(module, ()) if (ROOT / name).is_file()]
    if not tests:
        raise SystemExit(f"mutate: no test files mapped to {module} (see MODULES)")
    outcome = Outcome(module)
    with tempfile.TemporaryDirectory(prefix="zero-emqx-mutate-") as tmp:
        work = Path(tmp)
        _copy_tree(work)
        _configure(work, module, tests)
        run = _mutmut(work, "run")
        meta = work / "mutants" / (module + ".meta")
        if not meta.is_file():
            sys.stderr.write(run.stdout[-4000:] + run.stderr[-4000:])
            raise SystemExit(f"mutate: mutmut did not run for {module}")
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        for mutant, code in sorted(codes.items()):
            if code in _KILLED:
                outcome.killed += 1
            elif code in _TIMEOUT:
                outcome.timeout += 1
            elif code in _SURVIVED:
                diff = _mutmut(work, "show", mutant).stdout
                key = (module, _function_of(mutant), _mutated_line(diff))
                if key in EQUIVALENT:
                    outcome.equivalent += 1
                    if verbose:
                        print(f"equivalent {mutant}: {EQUIVALENT[key]}")
                    continue
                outcome.survived += 1
                print(f"--- survived: {mutant}\n{diff.strip()}\n")
            else:
                outcome.other += 1
                why = "no test runs this code" if code in _NO_TESTS else f"mutmut exit code {code}"
                print(f"--- not killed: {mutant}: {why}")
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="module paths (default: all in MODULES)")
    parser.add_argument("--fail-under", type=float, default=0.0, help="minimum kill rate (%%)")
    parser.add_argument("-v", "--verbose", action="store_true", help="list the equivalents")
    args = parser.parse_args(argv)
    modules = args.modules or list(MODULES)
    outcomes = [mutate(module, verbose=args.verbose) for module in modules]
    print(f"{'module':32} {'mutants':>7} {'killed':>6} {'survived':>8} {'equiv':>5} rate")
    for o in outcomes:
        killed = o.killed + o.timeout
        print(
            f"{o.module:32} {o.total:7} {killed:6} {o.survived:8} {o.equivalent:5}"
            f" {o.kill_rate:5.1f}%" + (f" ({o.other} not run: not killed)" if o.other else "")
        )
    return 1 if any(o.kill_rate < args.fail_under for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
