"""Manager settings, read once from an injectable environment."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from manager.bootstrap_keys import BootstrapKey, load_bootstrap_file
from manager.endpoints import Endpoints, parse_base_url, parse_wss_scheme
from manager.networks import Prefixes
from tenants.errors import ConfigError
from tenants.quotas import Quotas
from tenants.settings import (
    EmqxApiSettings,
    Environ,
    env_bool,
    env_float,
    env_int,
    env_str,
    parse_addr,
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PROXY_HEADERS = ("x-forwarded-for", "forwarded")


@dataclass(frozen=True)
class ManagerSettings:
    host: str = "0.0.0.0"
    port: int = 8080
    public_host: str = "localhost"
    mqtts_port: int = 8883
    wss_port: int = 8084
    wss_path: str = "/mqtt"
    ttl_seconds: int = 604800
    per_ip_rate: int = 10  # creations per caller group per minute; 0 = unlimited
    per_ip_max_live: int = 5  # unexpired instances per caller group; 0 = unlimited
    max_live_instances: int = 10000  # unexpired instances in all; 0 = unlimited
    trusted_proxies: tuple[Network, ...] = ()
    trusted_proxy_hops: int = 0  # trusted proxies in a row at most; 0 = no bound
    ip_hash_key: bytes | None = field(default=None, repr=False)
    request_deadline_seconds: float = 10.0
    max_body_bytes: int = 1024
    # The management API (/api/v1): MANAGEMENT_API, default on when a key file is given.
    management_api: bool = False
    bootstrap_keys: tuple[BootstrapKey, ...] = field(default=(), repr=False)
    max_ttl_seconds: int = 2592000  # the latest expiry an expiry change may set, from creation
    auth_failure_rate: int = 10  # failed authentications per caller group per minute
    max_credentials: int = 20  # scoped credentials per instance (MAX_CREDENTIALS_PER_INSTANCE)
    emqx: EmqxApiSettings = field(default_factory=EmqxApiSettings)
    public_base_url: str = "http://localhost:8080"  # where callers reach this manager
    wss_scheme: str = "wss"  # WSS_SCHEME=ws only for a local broker without TLS
    # Which header trusted proxies write the client into (PROXY_HEADER); the other is ignored.
    proxy_header: str = "x-forwarded-for"
    prefixes: Prefixes = field(default_factory=Prefixes)  # caller groups and networks
    per_network_max_live: int = 50  # unexpired instances per network; 0 = unlimited
    # The last live slots of MAX_LIVE_INSTANCES go only to networks holding none.
    max_live_reserved: int = 1000
    header_timeout_seconds: float = 10.0  # a request's headers must arrive within this
    body_timeout_seconds: float = 10.0  # and its body within this
    keepalive_timeout_seconds: float = 75.0  # an idle connection is closed after this
    max_connections: int = 1000  # open HTTP connections; more are closed at once
    ready_interval_seconds: float = 5.0  # /readyz answers from a check this recent
    quotas: Quotas = field(default_factory=Quotas)  # QUOTA_*: what an instance lives under

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(
            self.public_host, self.mqtts_port, self.wss_port, self.wss_path, self.wss_scheme
        )

    @classmethod
    def from_environ(cls, environ: Environ | None = None) -> ManagerSettings:
        env = os.environ if environ is None else environ
        host, port = parse_addr(env_str(env, "MANAGER_ADDR", "0.0.0.0:8080"), "MANAGER_ADDR")
        wss_path = env_str(env, "WSS_PATH", "/mqtt")
        if not wss_path.startswith("/"):
            raise ConfigError(f"WSS_PATH must start with '/', got {wss_path!r}")
        key = env.get("IP_HASH_KEY", "").strip()
        if key and len(key) < 16:
            raise ConfigError("IP_HASH_KEY must be at least 16 characters")
        keys_file = env.get("MANAGEMENT_API_KEYS_FILE", "").strip()
        bootstrap = load_bootstrap_file(Path(keys_file)) if keys_file else ()
        ttl = env_int(env, "TTL_SECONDS", 604800, minimum=1)
        max_ttl = env_int(env, "MAX_TTL_SECONDS", 2592000, minimum=1)
        if max_ttl < ttl:
            raise ConfigError(f"MAX_TTL_SECONDS ({max_ttl}) must be >= TTL_SECONDS ({ttl})")
        public_host = env_str(env, "PUBLIC_HOST", "localhost")
        base_url = env_str(env, "PUBLIC_BASE_URL", f"http://{public_host}:{port}")
        max_live = env_int(env, "MAX_LIVE_INSTANCES", 10000)
        per_network, reserved = _network_caps(env, max_live)
        return cls(
            host=host,
            port=port,
            public_host=public_host,
            mqtts_port=_port(env, "MQTTS_PORT", 8883),
            wss_port=_port(env, "WSS_PORT", 8084),
            wss_path=wss_path,
            ttl_seconds=ttl,
            per_ip_rate=env_int(env, "PER_IP_RATE", 10),
            per_ip_max_live=env_int(env, "PER_IP_MAX_LIVE", 5),
            max_live_instances=max_live,
            trusted_proxies=_networks(env.get("TRUSTED_PROXIES", "")),
            trusted_proxy_hops=env_int(env, "TRUSTED_PROXY_HOPS", 0),
            ip_hash_key=key.encode() if key else None,
            request_deadline_seconds=env_float(env, "REQUEST_DEADLINE_SECONDS", 10.0, minimum=0.01),
            max_body_bytes=env_int(env, "MAX_BODY_BYTES", 1024, minimum=2),
            management_api=env_bool(env, "MANAGEMENT_API", bool(keys_file)),
            bootstrap_keys=bootstrap,
            max_ttl_seconds=max_ttl,
            auth_failure_rate=env_int(env, "AUTH_FAILURE_RATE", 10),
            max_credentials=_max_credentials(env),
            emqx=EmqxApiSettings.from_environ(env),
            public_base_url=parse_base_url(base_url),
            wss_scheme=parse_wss_scheme(env_str(env, "WSS_SCHEME", "wss")),
            proxy_header=_proxy_header(env),
            prefixes=_prefixes(env),
            per_network_max_live=per_network,
            max_live_reserved=reserved,
            header_timeout_seconds=env_float(env, "HEADER_TIMEOUT_SECONDS", 10.0, minimum=0.01),
            body_timeout_seconds=env_float(env, "BODY_TIMEOUT_SECONDS", 10.0, minimum=0.01),
            keepalive_timeout_seconds=env_float(
                env, "KEEPALIVE_TIMEOUT_SECONDS", 75.0, minimum=0.01
            ),
            max_connections=env_int(env, "MAX_CONNECTIONS", 1000, minimum=1),
            ready_interval_seconds=env_float(env, "READY_INTERVAL_SECONDS", 5.0, minimum=0.01),
            quotas=Quotas.from_environ(env),
        )


MAX_CREDENTIALS_CAP = 1000  # a Secret holds at most 1 MiB; a credential takes ~300 bytes


def _max_credentials(env: Environ) -> int:
    value = env_int(env, "MAX_CREDENTIALS_PER_INSTANCE", 20, minimum=1)
    if value > MAX_CREDENTIALS_CAP:
        raise ConfigError(f"MAX_CREDENTIALS_PER_INSTANCE must be <= {MAX_CREDENTIALS_CAP}")
    return value


def _proxy_header(env: Environ) -> str:
    value = env_str(env, "PROXY_HEADER", "x-forwarded-for").lower()
    if value not in PROXY_HEADERS:
        raise ConfigError(f"PROXY_HEADER must be one of {', '.join(PROXY_HEADERS)}")
    return value


def _prefix(env: Environ, name: str, default: int, bits: int) -> int:
    value = env_int(env, name, default)
    if value > bits:
        raise ConfigError(f"{name} must be a prefix length from 0 to {bits}")
    return value


def _prefixes(env: Environ) -> Prefixes:
    prefixes = Prefixes(
        ipv4_group=_prefix(env, "IPV4_GROUP_PREFIX", 32, 32),
        ipv6_group=_prefix(env, "IPV6_GROUP_PREFIX", 64, 128),
        ipv4_network=_prefix(env, "IPV4_NETWORK_PREFIX", 24, 32),
        ipv6_network=_prefix(env, "IPV6_NETWORK_PREFIX", 48, 128),
    )
    if prefixes.ipv4_network > prefixes.ipv4_group or prefixes.ipv6_network > prefixes.ipv6_group:
        raise ConfigError("a NETWORK_PREFIX must not be longer than its GROUP_PREFIX")
    return prefixes


def _network_caps(env: Environ, max_live: int) -> tuple[int, int]:
    """PER_NETWORK_MAX_LIVE, and MAX_LIVE_RESERVED (default a tenth of the global cap)."""
    per_network = env_int(env, "PER_NETWORK_MAX_LIVE", 50)
    reserved = env_int(env, "MAX_LIVE_RESERVED", max_live // 10)
    if max_live and reserved >= max_live:
        raise ConfigError("MAX_LIVE_RESERVED must be below MAX_LIVE_INSTANCES")
    return per_network, reserved


def _port(env: Environ, name: str, default: int) -> int:
    value = env_int(env, name, default, minimum=1)
    if value > 65535:
        raise ConfigError(f"{name} must be a TCP port, got {value}")
    return value


def _networks(raw: str) -> tuple[Network, ...]:
    networks = []
    for item in raw.replace(" ", ",").split(","):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"TRUSTED_PROXIES has an invalid address or CIDR: {item!r}") from None
    return tuple(networks)
