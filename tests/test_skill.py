"""GET /SKILL.md: the deployment's own agent skill document, filled in from its settings."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
from pathlib import Path

import pytest
import yaml

from manager.limits import duration, limit_rows, quota_rows
from manager.settings import ManagerSettings
from manager.skill import render_skill
from tenants.local_store import LocalStore
from tests.manager_client import manager_for

README = Path(__file__).resolve().parents[1] / "README.md"
VERSION = importlib.metadata.version("zero-emqx")

SETTINGS = {
    "defaults": {},
    "production": {
        "PUBLIC_BASE_URL": "https://zero.example.org/",
        "PUBLIC_HOST": "mqtt.example.org",
        "MQTTS_PORT": "18883",
        "WSS_PORT": "443",
        "WSS_PATH": "/ws",
        "TTL_SECONDS": "7200",
        "PER_IP_RATE": "3",
        "PER_IP_MAX_LIVE": "2",
        "MAX_LIVE_INSTANCES": "777",
        "PER_NETWORK_MAX_LIVE": "9",
        "IPV6_GROUP_PREFIX": "56",
        "MAX_BODY_BYTES": "2048",
        "AUTH_FAILURE_RATE": "4",
        "QUOTA_MAX_SESSIONS": "3",
        "QUOTA_MESSAGES_RATE": "5/s",
        "QUOTA_MQUEUE_STORE_QOS0": "true",
    },
    "prefix-and-unlimited": {
        "PUBLIC_BASE_URL": "http://10.1.2.3:9999/zero",
        "PUBLIC_HOST": "broker.internal",
        "WSS_SCHEME": "ws",
        "WSS_PORT": "8083",
        "TTL_SECONDS": "90",
        "PER_IP_RATE": "0",
        "PER_IP_MAX_LIVE": "0",
        "MAX_LIVE_INSTANCES": "0",
    },
}


def settings_for(name: str) -> ManagerSettings:
    return ManagerSettings.from_environ({"MANAGER_ADDR": "0.0.0.0:8080", **SETTINGS[name]})


def front_matter(document: str) -> dict[str, object]:
    match = re.match(r"---\n(.*?)\n---\n", document, re.DOTALL)
    assert match, "SKILL.md must start with YAML front matter"
    loaded = yaml.safe_load(match.group(1))
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize("name", list(SETTINGS))
def test_front_matter_parses_and_names_the_package_version(name: str) -> None:
    settings = settings_for(name)
    meta = front_matter(render_skill(settings, VERSION))
    assert meta["name"] == "zero-emqx"
    assert meta["metadata"] == {"version": VERSION}
    assert isinstance(meta["description"], str) and settings.public_host in meta["description"]
    assert isinstance(meta["compatibility"], str)
    assert settings.endpoints.wss_uri in meta["compatibility"]


@pytest.mark.parametrize("name", list(SETTINGS))
def test_every_value_of_the_deployment_appears(name: str) -> None:
    s = settings_for(name)
    document = render_skill(s, VERSION)
    assert "{{" not in document
    e = s.endpoints
    expected = [
        f"POST {s.public_base_url}/v1/instances",
        f"curl -s -X POST {s.public_base_url}/v1/instances",
        f"{s.public_base_url}/v1/instances/$U/rotate-credentials",
        f"GET {s.public_base_url}/readyz",
        f"GET {s.public_base_url}/healthz",
        f'"mqtts": {{"host": "{e.host}", "port": {e.mqtts_port}, "uri": "{e.mqtts_uri}"}}',
        f'"wss": {{"host": "{e.host}", "port": {e.wss_port}, "uri": "{e.wss_uri}"}}',
        f"-h {e.host} -p {e.mqtts_port} -l mqtts",
        f"-h {e.host} -p {e.wss_port} -l {e.wss_scheme} --path {e.wss_path}",
        f"mosquitto_pub -h {e.host} -p {e.mqtts_port}",
        f'client.connect("{e.host}", {e.mqtts_port})',
        f'mqtt.connect("{e.wss_uri}"',
        f"valid for {duration(s.ttl_seconds)}",
        f"({s.ttl_seconds} s)",
        f"larger than {s.max_body_bytes} bytes",
    ]
    rows = (*limit_rows(s), *quota_rows(s.quotas))
    expected += [f"| {name} | {value} | {past} |" for name, value, past in rows]
    for limit in (s.per_ip_rate, s.per_ip_max_live, s.per_network_max_live, s.max_live_instances):
        assert any(value.startswith(f"{limit} ") for _, value, _ in rows) or not limit
    expected.append(f"at most {s.quotas.max_sessions} sessions times them")
    for text in expected:
        assert text in document, text
    assert not s.public_base_url.endswith("/")


async def test_served_as_markdown_with_this_deployments_values(tmp_path: Path) -> None:
    env = SETTINGS["production"]
    store = LocalStore(tmp_path / "data")
    try:
        async with manager_for(store, env) as m:
            response = await m.client.get("/SKILL.md")
            assert response.status_code == 200
            assert response.headers["Content-Type"] == "text/markdown; charset=utf-8"
            assert response.text == render_skill(m.settings, VERSION)
            assert "https://zero.example.org/v1/instances" in response.text
            created = (await m.client.post("/v1/instances")).json()
            assert f'"uri": "{created["wss"]["uri"]}"' in response.text
            assert f'"uri": "{created["mqtts"]["uri"]}"' in response.text
    finally:
        await store.close()


# --- the commands in SKILL.md are the ones the README documents ---------------------------

PROGRAMS = {"curl", "mqttx", "mosquitto_sub", "mosquitto_pub"}


def shell_commands(markdown: str) -> list[list[str]]:
    """Every command of a program above in the document's ```sh blocks, as argv."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            while argv and "=" in argv[0] and argv[0] not in PROGRAMS:
                argv = argv[1:]  # leading VAR=value assignments
            if argv and argv[0] in PROGRAMS:
                commands.append(argv)
    return commands


def signature(argv: list[str], base_url: str, host: str) -> tuple[str, ...]:
    """Program, subcommand, the flags used and, for curl, method and route."""
    program = argv[0]
    flags = sorted({a for a in argv[1:] if a.startswith("-")})
    head = [program, argv[1]] if program == "mqttx" else [program]
    if program != "curl":
        return (*head, *flags)
    method = argv[argv.index("-X") + 1] if "-X" in argv else "GET"
    (url,) = [a for a in argv[1:] if a.startswith(("http://", "https://", "localhost:"))]
    route = url.replace(base_url, "").replace("localhost:8080", "")
    route = re.sub(r"emqx-[0-9a-f]{16}|\$U", "{id}", route)
    return (*head, method, route, *flags)


def test_commands_are_the_ones_the_readme_documents() -> None:
    readme = README.read_text()
    s = ManagerSettings.from_environ(
        {"PUBLIC_HOST": "mqtt.example.com", "PUBLIC_BASE_URL": "http://localhost:8080"}
    )
    host = s.public_host
    skill = {signature(c, s.public_base_url, host) for c in shell_commands(render_skill(s, "0"))}
    documented = {signature(c, "", host) for c in shell_commands(readme)}
    assert skill, "SKILL.md shows no commands"
    assert skill <= documented, sorted(skill - documented)
    # every public route the README shows (create and self-service) is in SKILL.md
    public_routes = {sig[1:3] for sig in documented if sig[0] == "curl" and sig[2][:4] == "/v1/"}
    assert public_routes == {sig[1:3] for sig in skill if sig[0] == "curl"}
    # and not only their shape: the connection commands are the README's, word for word
    connect = [c for c in shell_commands(render_skill(s, "0")) if c[0] != "curl"]
    readme_lines = set(map(tuple, shell_commands(readme)))
    assert all(tuple(c) in readme_lines for c in connect)
