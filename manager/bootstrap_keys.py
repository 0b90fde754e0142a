"""The management API's bootstrap keys (MANAGEMENT_API_KEYS_FILE).

The file follows EMQX's `api_key.bootstrap_file`: one `key:secret:role` per line (role
`administrator` or `viewer`; `key:secret` means administrator, as in EMQX), empty lines
and `#` comments allowed. Secrets are kept as argon2id hashes made at load, so that
checking a bootstrap key costs what checking a stored key costs (manager/api_keys.py);
a bad line is a ConfigError naming the line number, never the secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tenants.api_keys import Role
from tenants.errors import ConfigError
from tenants.hashing import hash_password

BOOTSTRAP_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
BOOTSTRAP_SECRET_MIN = 16


@dataclass(frozen=True)
class BootstrapKey:
    name: str
    role: Role
    secret_hash: str = field(repr=False)  # argon2id PHC string

    @classmethod
    def of(cls, name: str, secret: str, role: Role) -> BootstrapKey:
        return cls(name, role, hash_password(secret))


def parse_bootstrap(text: str, source: str) -> tuple[BootstrapKey, ...]:
    """Every key of a bootstrap file; ConfigError names the line, never its secret."""
    keys: dict[str, BootstrapKey] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source} line {number}"
        parts = line.split(":")
        if len(parts) not in (2, 3):
            raise ConfigError(f"{where}: expected key:secret:role")
        name, secret = parts[0].strip(), parts[1].strip()
        role_text = parts[2].strip() if len(parts) == 3 else Role.ADMINISTRATOR.value
        if not BOOTSTRAP_KEY_RE.fullmatch(name):
            raise ConfigError(
                f"{where}: the key must be 1-128 of A-Z a-z 0-9 _ . - (starting alphanumeric)"
            )
        if len(secret) < BOOTSTRAP_SECRET_MIN:
            raise ConfigError(f"{where}: the secret must be at least {BOOTSTRAP_SECRET_MIN} chars")
        if role_text not in {r.value for r in Role}:
            raise ConfigError(f"{where}: the role must be administrator or viewer")
        if name in keys:
            raise ConfigError(f"{where}: key {name!r} appears twice")
        keys[name] = BootstrapKey.of(name, secret, Role(role_text))
    return tuple(keys.values())


def load_bootstrap_file(path: Path) -> tuple[BootstrapKey, ...]:
    source = f"MANAGEMENT_API_KEYS_FILE {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(f"{source}: cannot read it ({reason})") from None
    return parse_bootstrap(text, source)
