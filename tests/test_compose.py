"""docker-compose.yml and the Dockerfile, checked without a Docker engine: the files they
name exist, the laptop stack is wired the way emqx-config/ says (the expected values
are test_emqx_config.py's), and the image is multi-stage, non-root and free of build
tools. When a `docker compose` (or `docker-compose`) binary is on PATH, it also renders
the Compose file, and its reading of the env file must equal ours.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.test_emqx_config import (
    ACL_FILE_61,
    ACL_PATH,
    API_BIND,
    API_KEY_LINE_RE,
    API_KEYS_FILE,
    EXHOOK_URL,
    MQTTS_BIND,
    VARIANT_61,
    WSS_BIND,
    WSS_PATH,
    load_env_file,
)

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
UID = "10001"
BUILD_TOOLS = re.compile(
    r"\b(apt-get|apt|apk|yum|dnf|gcc|g\+\+|cc|make|build-essential|python3-dev|libffi-dev)\b"
)
_DEFAULTED = re.compile(r"\$\{(?P<name>[A-Z0-9_]+):-(?P<default>[^}]*)\}")


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"no service {name}"
    result: dict[str, Any] = services[name]
    return result


def interpolate(value: str) -> str:
    """Compose's `${NAME:-default}` with NAME unset."""
    assert "$" not in _DEFAULTED.sub("", value), f"only ${{NAME:-default}} is used: {value}"
    return _DEFAULTED.sub(lambda m: m["default"], value)


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def published(svc: dict[str, Any]) -> dict[int, tuple[str, int]]:
    """container port -> (host address, host port), from "ip:host:container" entries."""
    result = {}
    for entry in svc.get("ports", []):
        host_ip, host_port, target = str(entry).split(":")
        result[int(target)] = (host_ip, int(host_port))
    return result


EMQX = "emqx"
EXHOOK = "zero-emqx-exhook"
MANAGER = "zero-emqx-manager"


# --- the Compose file --------------------------------------------------------------


def test_referenced_files_exist() -> None:
    for name, svc in compose()["services"].items():
        build = svc.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build["context"])
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile")
            assert (context / str(dockerfile)).is_file(), name
        for env_file in svc.get("env_file", []):
            assert (ROOT / env_file).is_file(), f"{name}: {env_file}"
    for name, config in compose().get("configs", {}).items():
        assert "content" in config or (ROOT / config["file"]).is_file(), name


def test_emqx_runs_6_1_or_later_with_the_6_1_config() -> None:
    emqx = service(EMQX)
    image, _, tag = emqx["image"].partition(":")
    assert image == "emqx/emqx-enterprise"
    major, minor, patch = (int(part) for part in tag.split("."))
    # namespace_as_mountpoint (6.1), hardened profile and scoped API key line (6.2.1)
    assert (major, minor, patch) >= (6, 2, 1)
    assert [ROOT / path for path in emqx["env_file"]] == [VARIANT_61.env]


def test_emqx_loads_the_exhook_api_key() -> None:
    emqx, exhook = service(EMQX), service(EXHOOK)
    config, _ = emqx["configs"]
    assert config["target"] == API_KEYS_FILE
    line = interpolate(compose()["configs"][config["source"]]["content"])
    match = API_KEY_LINE_RE.match(line)
    assert match, line
    environment = exhook["environment"]
    assert match["key"] == environment["EMQX_API_KEY"]
    assert match["secret"] == interpolate(environment["EMQX_API_SECRET"])
    assert len(match["secret"]) >= 32


def test_emqx_loads_the_acl_file() -> None:
    """authorization.sources' path holds emqx-config/acl.conf (EMQX decides topics)."""
    _, config = service(EMQX)["configs"]
    assert config["target"] == ACL_PATH
    assert ROOT / compose()["configs"][config["source"]]["file"] == ACL_FILE_61
    assert VARIANT_61.expected["authorization.sources.1.path"] == ACL_PATH


def test_exhook_is_where_emqx_looks() -> None:
    url = urlsplit(EXHOOK_URL)
    assert url.hostname == EXHOOK
    environment = service(EXHOOK)["environment"]
    assert port_of(environment["EXHOOK_ADDR"]) == url.port
    api = urlsplit(environment["EMQX_API_URL"])
    assert (api.scheme, api.hostname, api.port) == ("http", EMQX, port_of(API_BIND))
    depends = service(EMQX)["depends_on"]
    assert depends[EXHOOK]["condition"] == "service_healthy"


def test_manager_hands_out_the_listeners_emqx_has() -> None:
    environment = service(MANAGER)["environment"]
    assert environment["PUBLIC_HOST"] == "localhost"
    assert int(environment["MQTTS_PORT"]) == port_of(MQTTS_BIND)
    assert int(environment["WSS_PORT"]) == port_of(WSS_BIND)
    assert environment["WSS_PATH"] == WSS_PATH
    assert published(service(MANAGER)) == {8080: ("127.0.0.1", 8080)}
    assert port_of(environment["MANAGER_ADDR"]) == 8080


def test_emqx_publishes_tls_listeners_on_loopback_only() -> None:
    ports = published(service(EMQX))
    for bind in (MQTTS_BIND, WSS_BIND, API_BIND):
        assert ports[port_of(bind)] == ("127.0.0.1", port_of(bind))
    assert 1883 not in ports
    assert 8083 not in ports
    for name in compose()["services"]:
        assert all(ip == "127.0.0.1" for ip, _ in published(service(name)).values()), name


def test_manager_and_exhook_share_the_embedded_store() -> None:
    mounts = []
    for name in (MANAGER, EXHOOK):
        svc = service(name)
        environment = svc["environment"]
        assert environment["ZERO_EMQX_STORE"] == "local"
        (volume,) = svc["volumes"]
        source, target = volume.split(":")
        assert target == environment["ZERO_EMQX_DATA_DIR"]
        mounts.append(source)
        assert source in compose()["volumes"]
    assert mounts[0] == mounts[1]


def test_our_services_run_locked_down_from_our_image() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name, command in ((MANAGER, "zero-emqx-manager"), (EXHOOK, "zero-emqx-exhook")):
        svc = service(name)
        assert svc["build"] == "."
        assert svc["command"] == [command]
        assert command in scripts
        assert svc["read_only"] is True
        assert svc["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in svc["security_opt"]
        assert "/tmp" in svc["tmpfs"]  # noqa: S108 - the tmpfs mount path itself
        assert svc["image"] == service(MANAGER)["image"]
        assert "healthcheck" in svc


def compose_command() -> list[str] | None:
    standalone = shutil.which("docker-compose")
    if standalone:
        return [standalone]
    docker = shutil.which("docker")
    if docker:
        done = subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if done.returncode == 0:
            return [docker, "compose"]
    return None


def test_compose_reads_the_env_file_as_we_do() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("no docker compose binary")
    done = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith(("ZERO_EMQX", "COMPOSE"))},
    )
    assert done.returncode == 0, done.stderr
    rendered = yaml.safe_load(done.stdout)
    environment = rendered["services"][EMQX]["environment"]
    expected = load_env_file(VARIANT_61.env) | service(EMQX)["environment"]
    assert environment == expected


# --- the Dockerfile ----------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def dockerfile_stages() -> list[Stage]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


def test_image_is_multi_stage_and_built_from_wheels() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    builder, final = stages[0], stages[-1]
    assert builder.name
    assert any("pip wheel" in run for run in builder.args("RUN"))
    assert any(f"from={builder.name}" in run for run in final.args("RUN")) or any(
        f"--from={builder.name}" in copy for copy in final.args("COPY")
    )
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    version = re.fullmatch(r">=(\d+\.\d+)", requires)
    assert version
    assert final.base == f"python:{version[1]}-slim"


def test_final_stage_has_no_build_tools_and_runs_as_10001() -> None:
    final = dockerfile_stages()[-1]
    for run in final.args("RUN"):
        assert not BUILD_TOOLS.search(run.replace("--mount=type=bind", "")), run
    assert not final.args("COPY") or all("--from=" in c for c in final.args("COPY"))
    users = final.args("USER")
    assert users
    assert users[-1].split(":")[0] == UID
    keywords = [kw for kw, _ in final.instructions]
    assert keywords.index("USER") > max(i for i, kw in enumerate(keywords) if kw == "RUN")


def test_image_ports_and_default_command() -> None:
    final = dockerfile_stages()[-1]
    exposed = {int(port) for args in final.args("EXPOSE") for port in args.split()}
    assert exposed == {8080, 9000, 9001}
    (cmd,) = final.args("CMD")
    assert yaml.safe_load(cmd) == ["zero-emqx", "serve"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"zero-emqx", "zero-emqx-manager", "zero-emqx-exhook"} <= set(scripts)


def test_build_context_holds_what_the_dockerfile_copies() -> None:
    ignore = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    ignore = [line for line in ignore if line and not line.startswith("#")]
    assert ignore[0] == "*", "the context is an allowlist"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    included = {pattern.rstrip("*") for pattern in packages["packages"]["find"]["include"]}
    copied: set[str] = set()
    for copy in dockerfile_stages()[0].args("COPY"):
        *sources, _ = copy.split()
        copied.update(source.rstrip("/") for source in sources if not source.startswith("--"))
    assert included <= copied
    for source in copied:
        assert source in allowed, f"{source} is not in the build context"
        assert source == "README.md" or (ROOT / source).exists(), source
