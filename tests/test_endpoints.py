"""The addresses callers are told: PUBLIC_BASE_URL, WSS_SCHEME and the endpoints."""

from __future__ import annotations

import pytest

from manager.endpoints import Endpoints
from manager.settings import ManagerSettings
from tenants.errors import ConfigError


def test_base_url_defaults_to_public_host_and_listen_port() -> None:
    settings = ManagerSettings.from_environ({"PUBLIC_HOST": "h.test", "MANAGER_ADDR": ":9090"})
    assert settings.public_base_url == "http://h.test:9090"


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("https://zero.example.com/", "https://zero.example.com"),
        ("https://zero.example.com:8443/api/zero/", "https://zero.example.com:8443/api/zero"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_base_url_is_kept_without_its_trailing_slash(raw: str, kept: str) -> None:
    assert ManagerSettings.from_environ({"PUBLIC_BASE_URL": raw}).public_base_url == kept


@pytest.mark.parametrize(
    "raw",
    [
        "zero.example.com",
        "ftp://zero.example.com",
        "https://",
        "https://zero.example.com/?x=1",
        "https://zero.example.com/#top",
        "https://user:secret@zero.example.com",
        "https://zero.example.com:99999",
    ],
)
def test_bad_base_url_is_refused_by_name(raw: str) -> None:
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL") as caught:
        ManagerSettings.from_environ({"PUBLIC_BASE_URL": raw})
    assert "secret" not in str(caught.value)


def test_wss_scheme() -> None:
    plain = ManagerSettings.from_environ({"WSS_SCHEME": "ws", "PUBLIC_HOST": "127.0.0.1"})
    assert plain.endpoints.wss_uri == "ws://127.0.0.1:8084/mqtt"
    assert plain.endpoints.wss_origin == "ws://127.0.0.1:8084"
    assert ManagerSettings.from_environ({}).endpoints.wss_uri == "wss://localhost:8084/mqtt"
    with pytest.raises(ConfigError, match="WSS_SCHEME"):
        ManagerSettings.from_environ({"WSS_SCHEME": "http"})


def test_body_is_the_post_answers_endpoints() -> None:
    e = Endpoints("mqtt.test", 8883, 443, "/ws")
    assert e.body() == {
        "mqtts": {"host": "mqtt.test", "port": 8883, "uri": "mqtts://mqtt.test:8883"},
        "wss": {"host": "mqtt.test", "port": 443, "uri": "wss://mqtt.test:443/ws"},
    }
