"""`zero-emqx instances list|delete`: the operator's view of the tenant store.

For the embedded store this is the way to see and delete instances (on Kubernetes,
`kubectl get/delete secret` does the same). A deletion is picked up by every running
ExHook through the store's watch: it refuses the tenant at once, kicks its sessions
and removes its EMQX namespace. Password hashes are never shown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from tenants.credentials import is_instance_id
from tenants.errors import ConfigError, StoreError
from tenants.local_store import DB_NAME
from tenants.record import Tenant, format_time
from tenants.settings import StoreSettings
from tenants.store import TenantStore
from tenants.stores import open_store

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE = 0, 1, 2
COLUMNS = ("ID", "STATE", "CREATED", "EXPIRES", "TAG")


def add_instances_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `instances list [--json]` and `instances delete ID` on a subparsers object."""
    parser = subparsers.add_parser(
        "instances",
        help="list or delete tenant instances in the configured store",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="instances_command", metavar="COMMAND", required=True)
    listing = sub.add_parser("list", help="every instance: id, state, created, expires, tag")
    listing.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    delete = sub.add_parser("delete", help="delete one instance (its sessions are kicked)")
    delete.add_argument("instance_id", metavar="ID", help="the instance id, emqx-<16 hex>")


def state_of(tenant: Tenant, now: datetime) -> str:
    if tenant.is_expired(now):
        return "expired"
    return "paused" if tenant.paused else "active"


def rows_for(tenants: Sequence[Tenant], now: datetime) -> list[dict[str, str]]:
    """What an operator may see of each record: never the hash or the caller's ip hash."""
    ordered = sorted(tenants, key=lambda t: (t.created_at, t.instance_id))
    return [
        {
            "id": t.instance_id,
            "state": state_of(t, now),
            "created": format_time(t.created_at),
            "expires": format_time(t.expires_at),
            "tag": t.tag,
        }
        for t in ordered
    ]


def format_table(rows: Sequence[dict[str, str]]) -> str:
    keys = [c.lower() for c in COLUMNS]
    widths = [max([len(c), *(len(r[k]) for r in rows)]) for c, k in zip(COLUMNS, keys, strict=True)]
    lines = [COLUMNS, *([r[k] for k in keys] for r in rows)]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def json_rows(rows: Sequence[dict[str, str]]) -> list[dict[str, Any]]:
    return [
        {
            "instance_id": r["id"],
            "state": r["state"],
            "created_at": r["created"],
            "expires_at": r["expires"],
            "tag": r["tag"],
        }
        for r in rows
    ]


async def instances_command(
    args: argparse.Namespace,
    store: TenantStore,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    now: datetime | None = None,
) -> int:
    """Run `instances list|delete` on an open store; the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    if args.instances_command == "list":
        listing = await store.list()
        rows = rows_for(listing.tenants, now or datetime.now(UTC))
        if args.json:
            print(json.dumps(json_rows(rows), indent=2), file=out)
        else:
            print(format_table(rows), file=out)
        return EXIT_OK
    instance_id = args.instance_id
    if not is_instance_id(instance_id):
        print(
            f"zero-emqx: {instance_id!r} is not an instance id (emqx- and 16 lowercase hex digits)",
            file=err,
        )
        return EXIT_USAGE
    if await store.delete(instance_id):
        print(f"deleted {instance_id}", file=out)
        return EXIT_OK
    print(f"zero-emqx: no instance {instance_id}", file=err)
    return EXIT_NOT_FOUND


def run_instances(args: argparse.Namespace) -> int:
    """`zero-emqx instances ...` on the store ZERO_EMQX_STORE/ZERO_EMQX_DATA_DIR name."""
    try:
        settings = StoreSettings.from_environ()
    except ConfigError as exc:
        print(f"zero-emqx: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if settings.kind == "local" and not (settings.data_dir / DB_NAME).exists():
        # Do not create an empty store because of a mistyped ZERO_EMQX_DATA_DIR.
        print(
            f"zero-emqx: no tenant store in {settings.data_dir} (ZERO_EMQX_DATA_DIR)",
            file=sys.stderr,
        )
        return EXIT_NOT_FOUND

    async def run() -> int:
        store = open_store(settings)
        try:
            return await instances_command(args, store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except ConfigError as exc:
        print(f"zero-emqx: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"zero-emqx: the tenant store failed: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
