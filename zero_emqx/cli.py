"""`zero-emqx serve` runs the manager and the ExHook on one store; the other
subcommands are for operators."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from tenants.errors import ConfigError
from tenants.settings import StoreSettings
from tenants.stores import open_store

log = logging.getLogger("zero_emqx")


def _configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


async def _serve(run_manager: bool, run_exhook: bool) -> None:
    from manager.main import install_stop_signals

    store_settings = StoreSettings.from_environ()
    stop = asyncio.Event()
    install_stop_signals(stop)
    if run_manager:
        from manager.main import serve as serve_manager
        from manager.main import with_ip_hash_key
        from manager.settings import ManagerSettings

        manager_settings = with_ip_hash_key(ManagerSettings.from_environ(), store_settings)
    if run_exhook:
        from exhook.main import serve as serve_exhook
        from exhook.settings import ExhookSettings

        exhook_settings = ExhookSettings.from_environ()
    store = open_store(store_settings)
    try:
        async with asyncio.TaskGroup() as group:
            if run_manager:
                group.create_task(serve_manager(manager_settings, store, stop), name="manager")
            if run_exhook:
                group.create_task(serve_exhook(exhook_settings, store, stop), name="exhook")
    finally:
        await store.close()


def _run(run_manager: bool, run_exhook: bool) -> int:
    _configure_logging()
    try:
        asyncio.run(_serve(run_manager, run_exhook))
    except (ConfigError, OSError, ExceptionGroup) as exc:
        errors = _flatten(exc)
        for error in errors:
            kind = "configuration error" if isinstance(error, ConfigError) else "cannot start"
            print(f"{kind}: {error}", file=sys.stderr)
        if all(isinstance(e, ConfigError) for e in errors):
            return 2
        if all(isinstance(e, ConfigError | OSError) for e in errors):
            return 1
        raise
    return 0


def _flatten(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _flatten(inner)]
    return [exc]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zero-emqx", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the manager and the ExHook together (the main job)")
    sub.add_parser("manager", help="run only the manager")
    sub.add_parser("exhook", help="run only the ExHook server")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _run(True, True)
    if args.command == "manager":
        return _run(True, False)
    return _run(False, True)


def manager_main() -> int:
    return _run(True, False)


def exhook_main() -> int:
    return _run(False, True)
