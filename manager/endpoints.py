"""The addresses a caller is told: the manager's public URL and the MQTT endpoints.

One place builds them, so the POST answer, SKILL.md and the console always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tenants.errors import ConfigError

WSS_SCHEMES = ("wss", "ws")  # ws: plain WebSocket, for a local broker without TLS only


def parse_base_url(raw: str, name: str = "PUBLIC_BASE_URL") -> str:
    """`http(s)://host[:port][/prefix]`, without a trailing slash, query or fragment."""
    try:
        url = urlsplit(raw)
        port = url.port
    except ValueError:
        raise ConfigError(f"{name} must be an http(s) URL, got {raw!r}") from None
    if url.scheme not in {"http", "https"} or not url.hostname or url.query or url.fragment:
        raise ConfigError(f"{name} must be http(s)://host[:port][/path], got {raw!r}")
    if url.username is not None or url.password is not None:
        raise ConfigError(f"{name} must not carry credentials")
    del port  # read only to validate it
    return f"{url.scheme}://{url.netloc}{url.path.rstrip('/')}"


def parse_wss_scheme(raw: str) -> str:
    if raw not in WSS_SCHEMES:
        raise ConfigError(f"WSS_SCHEME must be wss or ws, got {raw!r}")
    return raw


@dataclass(frozen=True)
class Endpoints:
    """Where an instance's MQTT clients connect."""

    host: str
    mqtts_port: int
    wss_port: int
    wss_path: str
    wss_scheme: str = "wss"

    @property
    def mqtts_uri(self) -> str:
        return f"mqtts://{self.host}:{self.mqtts_port}"

    @property
    def wss_uri(self) -> str:
        return f"{self.wss_scheme}://{self.host}:{self.wss_port}{self.wss_path}"

    @property
    def wss_origin(self) -> str:
        """What a Content-Security-Policy's connect-src must allow for the WSS endpoint."""
        return f"{self.wss_scheme}://{self.host}:{self.wss_port}"

    def body(self) -> dict[str, Any]:
        """The `mqtts` and `wss` members of POST /v1/instances."""
        return {
            "mqtts": {"host": self.host, "port": self.mqtts_port, "uri": self.mqtts_uri},
            "wss": {"host": self.host, "port": self.wss_port, "uri": self.wss_uri},
        }
