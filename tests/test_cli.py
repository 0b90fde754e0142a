"""The main job as a user runs it: `zero-emqx serve` in its own process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.emqx_harness import FakeEmqx, eventually
from tests.fakes.emqx_api import running_emqx_api
from tests.waiting import until as emqx_eventually

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Serve:
    process: asyncio.subprocess.Process
    manager: str
    exhook: str
    exhook_http: str


def serve_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXHOOK_", "MANAGER_"))}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "ZERO_EMQX_STORE": "local",
            "ZERO_EMQX_DATA_DIR": str(data_dir),
            "MANAGER_ADDR": f"127.0.0.1:{free_port()}",
            "EXHOOK_ADDR": f"127.0.0.1:{free_port()}",
            "EXHOOK_HTTP_ADDR": f"127.0.0.1:{free_port()}",
            "EXHOOK_SHUTDOWN_GRACE_SECONDS": "1",
            "LOG_LEVEL": "DEBUG",
        }
    )
    env.update(extra or {})
    return env


@asynccontextmanager
async def zero_emqx(env: dict[str, str], *args: str) -> AsyncIterator[Serve]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "zero_emqx",
        *(args or ("serve",)),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield Serve(
            process,
            f"http://{env['MANAGER_ADDR']}",
            env["EXHOOK_ADDR"],
            f"http://{env['EXHOOK_HTTP_ADDR']}",
        )
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def ready(client: httpx.AsyncClient, url: str) -> int:
    try:
        return (await client.get(url)).status_code
    except httpx.TransportError:
        return 0


async def wait_ready(client: httpx.AsyncClient, url: str) -> bool:
    async def probe() -> int:
        return await ready(client, url)

    return await eventually(probe, 200, timeout=30) == 200


async def stop(serve: Serve) -> str:
    serve.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(serve.process.wait(), 15) == 0
    assert serve.process.stderr is not None
    return (await serve.process.stderr.read()).decode()


async def test_serve_mints_credentials_the_exhook_accepts_across_restarts(
    tmp_path: Path,
) -> None:
    env = serve_env(tmp_path / "data")
    logs = []
    async with httpx.AsyncClient(timeout=10) as client:
        async with zero_emqx(env) as serve:
            for url in (f"{serve.manager}/readyz", f"{serve.exhook_http}/readyz"):
                assert await wait_ready(client, url)
            response = await client.post(f"{serve.manager}/v1/instances", json={"tag": "e2e"})
            assert response.status_code == 201
            creds = response.json()["credentials"]
            async with FakeEmqx(serve.exhook) as emqx:
                assert await emqx.load() == ["client.authenticate"]
                good = await emqx.connect(creds["username"], creds["password"])
                assert (good.verdict, good.explicit) == ("allow", True)
                # One character off, and never the right one (its last may be "A").
                password = creds["password"]
                wrong = password[:-1] + ("A" if password[-1] != "A" else "B")
                bad = await emqx.connect(creds["username"], wrong)
                assert (bad.verdict, bad.explicit) == ("deny", True)
                assert await emqx.publish(creds["username"], "temperature/sensor1") == "allow"
                assert emqx.calls["OnClientAuthorize"] == 0
            logs.append(await stop(serve))

        env = serve_env(tmp_path / "data")
        async with zero_emqx(env) as serve:
            assert await wait_ready(client, f"{serve.exhook_http}/readyz")
            async with FakeEmqx(serve.exhook) as emqx:
                again = await emqx.connect(creds["username"], creds["password"])
                assert again.verdict == "allow"
            logs.append(await stop(serve))

    everything = "\n".join(logs)
    assert creds["username"] in everything  # the log does talk about the instance...
    assert creds["password"] not in everything  # ...but never shows its password
    assert "$argon2" not in everything
    on_disk = b"".join(p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file())
    assert creds["password"].encode() not in on_disk


async def test_bad_settings_stop_before_anything_listens(tmp_path: Path) -> None:
    env = serve_env(tmp_path / "data", {"EXHOOK_TLS_CERT": "/nonexistent.pem", "PER_IP_RATE": "x"})
    async with zero_emqx(env) as serve:
        assert await asyncio.wait_for(serve.process.wait(), 15) == 2
        assert serve.process.stderr is not None
        err = (await serve.process.stderr.read()).decode()
    assert "configuration error" in err
    assert "PER_IP_RATE" in err


async def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = serve_env(tmp_path / "data", {"MANAGER_ADDR": f"127.0.0.1:{port}"})
        async with zero_emqx(env, "manager") as serve:
            assert await asyncio.wait_for(serve.process.wait(), 15) == 1
            assert serve.process.stderr is not None
            err = (await serve.process.stderr.read()).decode()
    assert "cannot start" in err


async def test_operator_delete_and_expiry_reach_emqx_through_serve(tmp_path: Path) -> None:
    """The main job wired to EMQX's REST API: an operator's delete and an expiry both end
    with the namespace gone from EMQX, with the configured key."""
    async with running_emqx_api("zero-exhook", "api-secret-0123456789") as emqx_api:
        data = tmp_path / "data"
        env = serve_env(
            data,
            {
                "EMQX_API_URL": emqx_api.url,
                "EMQX_API_KEY": "zero-exhook",
                "EMQX_API_SECRET": "api-secret-0123456789",
                "REAP_INTERVAL_SECONDS": "0.2",
                "KICK_RETRY_INITIAL_SECONDS": "0.1",
                "PER_IP_MAX_LIVE": "0",
            },
        )
        async with httpx.AsyncClient(timeout=10) as client, zero_emqx(env) as serve:
            assert await wait_ready(client, f"{serve.exhook_http}/readyz")
            kept = (await client.post(f"{serve.manager}/v1/instances")).json()["instance_id"]
            doomed = (await client.post(f"{serve.manager}/v1/instances")).json()["instance_id"]
            for instance_id in (kept, doomed):
                emqx_api.connect(instance_id, f"{instance_id}-sensor")

            code = await asyncio.to_thread(instances_cli, env, "instances", "delete", doomed)
            assert code == 0
            await emqx_eventually(
                lambda: doomed not in emqx_api.namespaces and not emqx_api.clients_of(doomed),
                timeout=10,
            )
            assert kept in emqx_api.namespaces
            assert emqx_api.clients_of(kept) == [f"{kept}-sensor"]
            deletes = emqx_api.calls_to("DELETE", f"/mt/ns/{doomed}")
            assert deletes and all(call.auth_ok for call in deletes)
            await stop(serve)

        # A short TTL: the reaper deletes the record, and the namespace follows.
        env["TTL_SECONDS"] = "1"
        async with httpx.AsyncClient(timeout=10) as client, zero_emqx(env) as serve:
            assert await wait_ready(client, f"{serve.exhook_http}/readyz")
            brief = (await client.post(f"{serve.manager}/v1/instances")).json()["instance_id"]
            emqx_api.connect(brief, f"{brief}-sensor")
            await emqx_eventually(lambda: brief not in emqx_api.namespaces, timeout=10)
            assert kept in emqx_api.namespaces  # 7 days left: untouched
            await stop(serve)
        listing = await asyncio.to_thread(instances_cli, env, "instances", "list", "--json")
        assert listing == 0


def instances_cli(env: dict[str, str], *argv: str) -> int:
    """`zero-emqx instances ...` in its own process, as an operator runs it."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "zero_emqx", *argv], env=env, capture_output=True, timeout=30
    )
    return done.returncode
