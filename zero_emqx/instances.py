"""`zero-emqx instances list|show|delete|pause|resume|rotate`: the operator's tools on the
configured tenant store (the embedded one, or Kubernetes Secrets).

Each command is the same record change as the management API's (tenants.operations):
pause and resume set `paused`, rotate stores a new password hash and prints the new
password once, delete removes the record. Every running ExHook follows the store's
watch: it refuses a paused, deleted or rotated-away credential at once and kicks the
sessions. An expired instance can only be deleted. Password hashes are never shown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from manager.views import credential_view
from tenants.credentials import is_instance_id
from tenants.errors import ConfigError, NotFound, StoreError
from tenants.local_store import DB_NAME
from tenants.operations import OperationRefused, modify, rotate, set_paused
from tenants.record import Tenant, format_time
from tenants.settings import StoreSettings
from tenants.store import TenantStore
from tenants.stores import open_store

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE = 0, 1, 2
COLUMNS = ("ID", "STATE", "CREATED", "EXPIRES", "TAG")


def add_instances_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `instances list|show|delete|pause|resume|rotate` on a subparsers object."""
    parser = subparsers.add_parser(
        "instances",
        help="list, show, delete, pause, resume or rotate tenant instances",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="instances_command", metavar="COMMAND", required=True)
    listing = sub.add_parser("list", help="every instance: id, state, created, expires, tag")
    listing.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    for name, help_text in (
        ("show", "one instance: id, state, created, expires, tag, scoped credentials"),
        ("delete", "delete one instance (its sessions are kicked)"),
        ("pause", "refuse the instance's connections and kick its sessions"),
        ("resume", "admit a paused instance again"),
        ("rotate", "a new password (printed once); sessions on the old one are kicked"),
    ):
        command = sub.add_parser(name, help=help_text)
        command.add_argument("instance_id", metavar="ID", help="the instance id, emqx-<16 hex>")
        if name in {"show", "rotate"}:
            command.add_argument("--json", action="store_true", help="JSON instead of text")


def state_of(tenant: Tenant, now: datetime) -> str:
    return tenant.state_at(now)


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
    """Run one `instances` command on an open store; the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    now = now or datetime.now(UTC)
    if args.instances_command == "list":
        listing = await store.list()
        rows = rows_for(listing.tenants, now)
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
    try:
        return await _one(args, store, instance_id, now, out)
    except NotFound:
        print(f"zero-emqx: no instance {instance_id}", file=err)
        return EXIT_NOT_FOUND
    except OperationRefused as exc:
        print(f"zero-emqx: {exc}", file=err)
        return EXIT_NOT_FOUND


async def _one(
    args: argparse.Namespace, store: TenantStore, instance_id: str, now: datetime, out: TextIO
) -> int:
    command = args.instances_command
    if command == "delete":
        if not await store.delete(instance_id):
            raise NotFound(instance_id)
        print(f"deleted {instance_id}", file=out)
    elif command == "show":
        tenant = await store.get(instance_id)
        if tenant is None:
            raise NotFound(instance_id)
        row: dict[str, Any] = json_rows(rows_for([tenant], now))[0]
        scoped = [credential_view(tenant, c) for c in tenant.credentials]
        if args.json:
            print(json.dumps({**row, "credentials": scoped}, indent=2), file=out)
        else:
            lines = [f"{key}: {value}" for key, value in row.items()]
            lines.append(f"credentials: {len(scoped)}")
            lines += [
                f"  {c['username']}  {c['label']}"
                f"  publish={'yes' if c['allow_publish'] else 'no'}"
                f"  subscribe={'yes' if c['allow_subscribe'] else 'no'}"
                for c in scoped
            ]
            print("\n".join(lines), file=out)
    elif command in {"pause", "resume"}:
        await modify(store, instance_id, set_paused(command == "pause", now))
        print(f"{'paused' if command == 'pause' else 'resumed'} {instance_id}", file=out)
    else:  # rotate
        tenant, password = await rotate(store, instance_id, now)
        answer = {"username": tenant.instance_id, "password": password}
        if args.json:
            print(json.dumps(answer, indent=2), file=out)
        else:
            print(f"username: {tenant.instance_id}\npassword: {password}", file=out)
    return EXIT_OK


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
