"""EXHOOK_PROCESSES: several ExHook processes on one port (SO_REUSEPORT), and only then."""

from __future__ import annotations

import socket

import pytest

from exhook.observability import ExhookMetrics
from exhook.server import GrpcServer, create_server, server_options
from exhook.settings import ExhookSettings
from exhook.verifier import Verifier
from tenants.errors import ConfigError
from tenants.index import TenantIndex
from tests.emqx_harness import FakeEmqx, exhook_settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_the_setting() -> None:
    assert ExhookSettings.from_environ({}).processes == 1
    env = {"EXHOOK_PROCESSES": "2", "EXHOOK_ADDR": "0.0.0.0:9000"}
    assert ExhookSettings.from_environ(env).processes == 2
    with pytest.raises(ConfigError, match="EXHOOK_PROCESSES"):
        ExhookSettings.from_environ({"EXHOOK_PROCESSES": "0"})
    with pytest.raises(ConfigError, match="fixed port"):
        ExhookSettings(addr=("127.0.0.1", 0), processes=2)
    assert ("grpc.so_reuseport", 0) in server_options(ExhookSettings())
    shared = server_options(ExhookSettings(addr=("127.0.0.1", 9000), processes=2))
    assert ("grpc.so_reuseport", 1) in shared
    assert len(shared) == len(server_options(ExhookSettings()))


async def test_processes_share_the_port_only_when_asked() -> None:
    port = free_port()
    verifier = Verifier(workers=1, cache_size=1)
    servers: list[GrpcServer] = []
    try:
        shared = exhook_settings(addr=("127.0.0.1", port), processes=2)
        for _ in range(2):  # what two processes do: the second binds the same port
            servers.append(create_server(shared, TenantIndex(), verifier, ExhookMetrics()))
            await servers[-1].start()
        async with FakeEmqx(f"127.0.0.1:{port}") as emqx:
            assert await emqx.health() >= 0
        with pytest.raises(OSError, match="cannot listen"):  # a lone one keeps it exclusive
            create_server(
                exhook_settings(addr=("127.0.0.1", port)), TenantIndex(), verifier, ExhookMetrics()
            )
    finally:
        for server in servers:
            await server.stop(None)
        verifier.close()
