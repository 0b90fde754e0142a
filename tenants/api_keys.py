"""Management API keys: the record, its naming rules and the store interface.

A key authenticates as HTTP Basic `name:secret` (EMQX's `api_key:api_secret`). The
store keeps an argon2id hash of the secret (tenants.hashing), never the secret. Two
implementations beside the tenant stores: `LocalApiKeyStore` (a table in the embedded
sqlite database) and `KubernetesApiKeyStore` (one Secret per key, labelled
`zero-emqx.io/api-key=true`, which the tenant selector never matches).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class Role(StrEnum):
    """EMQX's API key roles: a viewer may only read."""

    ADMINISTRATOR = "administrator"
    VIEWER = "viewer"


# Lowercase alphanumerics and '-' inside, at most 63: a Kubernetes label value and, with
# the Secret prefix, a valid Secret name.
API_KEY_NAME_MAX = 63
API_KEY_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def is_api_key_name(value: str) -> bool:
    return API_KEY_NAME_RE.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One stored key. `revision` is the store's version of the record ('' before storing)."""

    name: str
    role: Role
    secret_hash: str = field(repr=False)
    created_at: datetime
    revision: str = ""


class ApiKeyStore(Protocol):
    async def create(self, key: ApiKey) -> ApiKey:
        """Store a new key; raises AlreadyExists when the name is taken."""

    async def get(self, name: str) -> ApiKey | None: ...

    async def list(self) -> tuple[ApiKey, ...]:
        """Every readable key (unreadable records are skipped with a warning)."""

    async def delete(self, name: str) -> bool:
        """Remove a key; False when it was already gone."""

    async def close(self) -> None: ...
