"""The `zero-emqx` command.

`zero-emqx serve` runs the manager and the ExHook in one process on one store
(the main job); `manager` and `exhook` run one of them; `instances` lists, shows,
pauses, resumes, rotates and deletes instances in the configured store.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from tenants.errors import ConfigError
from tenants.settings import StoreSettings
from tenants.stores import open_store

log = logging.getLogger("zero_emqx")


def configure_logging() -> None:
    level = os.environ.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
    logging.basicConfig(
        level=level if level in logging.getLevelNamesMapping() else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO; the lifecycle logs what matters itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT ask for a graceful stop."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def serve(run_manager: bool, run_exhook: bool) -> None:
    """Read every setting first (so a bad one stops us before anything listens), then run."""
    from exhook.lifecycle import LifecycleSettings
    from exhook.main import serve as serve_exhook
    from exhook.settings import ExhookSettings
    from manager.main import serve as serve_manager
    from manager.main import with_ip_hash_key
    from manager.settings import ManagerSettings
    from tenants.settings import EmqxApiSettings

    store_settings = StoreSettings.from_environ()
    manager_settings = (
        with_ip_hash_key(ManagerSettings.from_environ(), store_settings) if run_manager else None
    )
    exhook_settings = ExhookSettings.from_environ() if run_exhook else None
    api_settings = EmqxApiSettings.from_environ() if run_exhook else None
    lifecycle_settings = LifecycleSettings.from_environ() if run_exhook else None
    stop = asyncio.Event()
    install_stop_signals(stop)
    store = open_store(store_settings)
    try:
        async with asyncio.TaskGroup() as group:
            if manager_settings is not None:
                group.create_task(serve_manager(manager_settings, store, stop), name="manager")
            if exhook_settings is not None:
                exhook = serve_exhook(
                    exhook_settings,
                    store,
                    stop,
                    api_settings=api_settings,
                    lifecycle_settings=lifecycle_settings,
                )
                group.create_task(exhook, name="exhook")
    finally:
        await store.close()
    log.info("stopped")


def _run(run_manager: bool, run_exhook: bool) -> int:
    configure_logging()
    try:
        asyncio.run(serve(run_manager, run_exhook))
    except (ConfigError, OSError, ExceptionGroup) as exc:
        errors = _flatten(exc)
        if not all(isinstance(e, ConfigError | OSError) for e in errors):
            raise
        for error in errors:
            kind = "configuration error" if isinstance(error, ConfigError) else "cannot start"
            print(f"zero-emqx: {kind}: {error}", file=sys.stderr)
        return 2 if all(isinstance(e, ConfigError) for e in errors) else 1
    return 0


def _flatten(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _flatten(inner)]
    return [exc]


def main(argv: Sequence[str] | None = None) -> int:
    from zero_emqx.instances import add_instances_parser, run_instances

    parser = argparse.ArgumentParser(prog="zero-emqx", description=__doc__.split("\n\n")[1])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the manager and the ExHook together (the main job)")
    sub.add_parser("manager", help="run only the manager")
    sub.add_parser("exhook", help="run only the ExHook server")
    add_instances_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "instances":
        return run_instances(args)
    return _run(args.command in {"serve", "manager"}, args.command in {"serve", "exhook"})


def manager_main() -> int:
    return _run(True, False)


def exhook_main() -> int:
    return _run(False, True)
