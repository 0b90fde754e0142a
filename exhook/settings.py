"""The ExHook server's settings, read once from an injectable environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from tenants.errors import ConfigError
from tenants.settings import env_float, env_int, env_str, parse_addr


class UnknownUserAction(StrEnum):
    """What to answer for a username that is not one of our instance ids."""

    DENY = "deny"
    IGNORE = "ignore"  # ValuedResponse(type=IGNORE): another authenticator decides


def _default_workers() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class ExhookSettings:
    """Every field has an environment variable (in the comment) and a default.

    `addr`/`http_addr` port 0 asks the OS for a free port (tests)."""

    addr: tuple[str, int] = ("0.0.0.0", 9000)  # EXHOOK_ADDR
    http_addr: tuple[str, int] = ("0.0.0.0", 9001)  # EXHOOK_HTTP_ADDR
    tls_cert: Path | None = None  # EXHOOK_TLS_CERT (PEM file; with EXHOOK_TLS_KEY)
    tls_key: Path | None = None  # EXHOOK_TLS_KEY (PEM file; with EXHOOK_TLS_CERT)
    unknown_user_action: UnknownUserAction = UnknownUserAction.DENY  # UNKNOWN_USER_ACTION
    verify_workers: int = 0  # VERIFY_WORKERS; 0 = os.cpu_count()
    verify_cache_size: int = 100_000  # VERIFY_CACHE_SIZE; 0 disables the cache
    verify_queue_timeout: float = 2.0  # VERIFY_QUEUE_TIMEOUT_SECONDS
    deadline_margin: float = 0.25  # EXHOOK_DEADLINE_MARGIN_SECONDS: kept free of EMQX's deadline
    shutdown_grace: float = 5.0  # EXHOOK_SHUTDOWN_GRACE_SECONDS: in-flight calls may finish
    lookup_rate: float = 20.0  # EXHOOK_LOOKUP_RATE: store reads/s for ids the index lacks
    # EXHOOK_PROCESSES: ExHook processes run on this `addr` (one per core, each started on
    # its own with its own EXHOOK_HTTP_ADDR); > 1 sets SO_REUSEPORT so that they share it.
    processes: int = 1
    # EMQX_SETTINGS_CHECK_SECONDS: how often EMQX's effective settings are read (with
    # EMQX_API_URL; exhook/emqx_settings.py); every 2 s while one is wrong.
    settings_check_interval: float = 30.0

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("EXHOOK_TLS_CERT and EXHOOK_TLS_KEY must be set together")
        try:  # accept the plain string too ("deny" / "ignore")
            action = UnknownUserAction(self.unknown_user_action)
        except ValueError:
            raise ConfigError(
                f"UNKNOWN_USER_ACTION must be deny or ignore, got {self.unknown_user_action!r}"
            ) from None
        object.__setattr__(self, "unknown_user_action", action)
        if self.verify_workers == 0:
            object.__setattr__(self, "verify_workers", _default_workers())
        if self.processes < 1:
            raise ConfigError(f"EXHOOK_PROCESSES must be >= 1, got {self.processes}")
        if self.processes > 1 and self.addr[1] == 0:
            raise ConfigError("EXHOOK_PROCESSES > 1 needs a fixed port in EXHOOK_ADDR")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ExhookSettings:
        env = os.environ if environ is None else environ
        action = env_str(env, "UNKNOWN_USER_ACTION", "deny").lower()
        if action not in {a.value for a in UnknownUserAction}:
            raise ConfigError(f"UNKNOWN_USER_ACTION must be deny or ignore, got {action!r}")
        cert = env.get("EXHOOK_TLS_CERT", "").strip()
        key = env.get("EXHOOK_TLS_KEY", "").strip()
        return cls(
            addr=parse_addr(env_str(env, "EXHOOK_ADDR", "0.0.0.0:9000"), "EXHOOK_ADDR"),
            http_addr=parse_addr(
                env_str(env, "EXHOOK_HTTP_ADDR", "0.0.0.0:9001"), "EXHOOK_HTTP_ADDR"
            ),
            tls_cert=Path(cert) if cert else None,
            tls_key=Path(key) if key else None,
            unknown_user_action=UnknownUserAction(action),
            verify_workers=env_int(env, "VERIFY_WORKERS", _default_workers(), minimum=1),
            verify_cache_size=env_int(env, "VERIFY_CACHE_SIZE", 100_000, minimum=0),
            verify_queue_timeout=env_float(env, "VERIFY_QUEUE_TIMEOUT_SECONDS", 2.0, minimum=0.001),
            deadline_margin=env_float(env, "EXHOOK_DEADLINE_MARGIN_SECONDS", 0.25),
            shutdown_grace=env_float(env, "EXHOOK_SHUTDOWN_GRACE_SECONDS", 5.0),
            lookup_rate=env_float(env, "EXHOOK_LOOKUP_RATE", 20.0),
            processes=env_int(env, "EXHOOK_PROCESSES", 1, minimum=1),
            settings_check_interval=env_float(
                env, "EMQX_SETTINGS_CHECK_SECONDS", 30.0, minimum=0.1
            ),
        )

    def read_tls(self) -> tuple[bytes, bytes] | None:
        """(private key, certificate chain) PEM bytes, or None for cleartext h2c."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        try:
            return self.tls_key.read_bytes(), self.tls_cert.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the ExHook TLS files: {exc}") from None
