"""Imports only point down: zero_emqx -> {manager, exhook} -> tenants.

The core imports neither aiohttp nor grpc; manager and exhook never import each other.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

FORBIDDEN = {
    "tenants": {"manager", "exhook", "zero_emqx", "aiohttp", "grpc", "grpc_health"},
    "manager": {"exhook", "zero_emqx", "grpc", "grpc_health"},
    "exhook": {"manager", "zero_emqx"},
}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def main() -> int:
    errors = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted(Path(package).rglob("*.py")):
            for root in sorted(imported_roots(path) & forbidden):
                errors.append(f"{path}: imports {root} (imports must point down)")
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
