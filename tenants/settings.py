"""Typed settings shared by both apps, read once from an injectable environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tenants.errors import ConfigError

Environ = Mapping[str, str]


def env_str(environ: Environ, name: str, default: str) -> str:
    return environ.get(name, default).strip() or default


def env_int(environ: Environ, name: str, default: int, *, minimum: int = 0) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def env_float(environ: Environ, name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def env_bool(environ: Environ, name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def parse_addr(value: str, name: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::]:9000`) into its parts."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{name} must be host:port, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


@dataclass(frozen=True)
class StoreSettings:
    """Which tenant store to use and where it lives."""

    kind: str = "local"  # local | kubernetes
    data_dir: Path = Path("./data")
    kube_namespace: str = "default"
    kube_timeout_seconds: float = 10.0
    ttl_seconds: int = 604800

    @classmethod
    def from_environ(cls, environ: Environ | None = None) -> StoreSettings:
        env = os.environ if environ is None else environ
        kind = env_str(env, "ZERO_EMQX_STORE", "local")
        if kind not in {"local", "kubernetes"}:
            raise ConfigError(f"ZERO_EMQX_STORE must be local or kubernetes, got {kind!r}")
        return cls(
            kind=kind,
            data_dir=Path(env_str(env, "ZERO_EMQX_DATA_DIR", "./data")),
            kube_namespace=env_str(env, "KUBE_NAMESPACE", _in_cluster_namespace()),
            kube_timeout_seconds=env_float(env, "KUBE_TIMEOUT_SECONDS", 10.0, minimum=0.1),
            ttl_seconds=env_int(env, "TTL_SECONDS", 604800, minimum=1),
        )


def _in_cluster_namespace() -> str:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    try:
        return path.read_text().strip() or "default"
    except OSError:
        return "default"


EMQX_API_PREFIX = "/api/v5"


@dataclass(frozen=True)
class EmqxApiSettings:
    """Where EMQX's REST API is and the API key to use (HTTP Basic).

    The ExHook kicks sessions and removes namespaces through it; the manager only reads
    client counts. EMQX_API_URL unset: neither calls EMQX."""

    url: str | None = None  # EMQX_API_URL, e.g. http://emqx-dashboard:18083
    key: str = ""  # EMQX_API_KEY
    secret: str = field(default="", repr=False)  # EMQX_API_SECRET
    timeout_seconds: float = 5.0  # EMQX_API_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        if self.url is None:
            return
        parts = urlsplit(self.url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigError(f"EMQX_API_URL must be an http(s) URL, got {self.url!r}")
        if parts.username is not None or parts.password is not None:
            raise ConfigError("EMQX_API_URL must not carry credentials; use EMQX_API_KEY/SECRET")
        if parts.query or parts.fragment:
            raise ConfigError("EMQX_API_URL must not have a query or fragment")
        if not self.key or not self.secret:
            raise ConfigError("EMQX_API_URL needs EMQX_API_KEY and EMQX_API_SECRET")

    @property
    def enabled(self) -> bool:
        return self.url is not None

    @property
    def base_url(self) -> str:
        """The `/api/v5` root, whether or not EMQX_API_URL already ends with it."""
        root = (self.url or "").rstrip("/")
        return root if root.endswith(EMQX_API_PREFIX) else root + EMQX_API_PREFIX

    @classmethod
    def from_environ(cls, environ: Environ | None = None) -> EmqxApiSettings:
        env = os.environ if environ is None else environ
        url = env.get("EMQX_API_URL", "").strip()
        return cls(
            url=url or None,
            key=env.get("EMQX_API_KEY", "").strip(),
            secret=env.get("EMQX_API_SECRET", "").strip(),
            timeout_seconds=env_float(env, "EMQX_API_TIMEOUT_SECONDS", 5.0, minimum=0.001),
        )
