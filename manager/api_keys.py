"""Management API keys: the bootstrap file's (manager/bootstrap_keys.py) and the
store's, listed, created, deleted and verified in one place.

Keys created through the API live in the ApiKeyStore as argon2id hashes of their
secrets; bootstrap keys carry an argon2id hash made at load. Every check takes the same
path whichever kind of key, or no key, the name is: one store read (for any name shaped
like a stored key's), then one argon2 verify against the key's hash or the decoy. A
verified secret is remembered as a keyed digest of (name, hash, secret), so repeated
calls skip argon2 until the key is deleted or replaced; the plaintext is never kept.
Each call still reads the key's record, so a key deleted on another replica stops
working at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime

from manager.bootstrap_keys import BootstrapKey
from manager.instances import BadRequest
from tenants.api_keys import ApiKey, ApiKeyStore, Role, is_api_key_name
from tenants.credentials import new_password
from tenants.errors import AlreadyExists
from tenants.hashing import DECOY_HASH, hash_password, verify_password
from tenants.record import utc_now

CACHE_SIZE = 1024


class VerifiedCache:
    """LRU of keyed digests of credentials that verified; the key is random per process."""

    def __init__(self, max_size: int = CACHE_SIZE) -> None:
        self.max_size = max_size
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, None] = OrderedDict()

    def _digest(self, parts: Sequence[str]) -> bytes:
        joined = "\0".join(parts).encode()
        return hmac.new(self._key, joined, hashlib.sha256).digest()

    def hit(self, *parts: str) -> bool:
        digest = self._digest(parts)
        if digest not in self._entries:
            return False
        self._entries.move_to_end(digest)
        return True

    def remember(self, *parts: str) -> None:
        if self.max_size <= 0:
            return
        self._entries[self._digest(parts)] = None
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)


@dataclass(frozen=True)
class KeyInfo:
    """What anyone may see of a key: never its secret or hash."""

    name: str
    role: Role
    source: str  # bootstrap | api
    created_at: datetime | None = None


@dataclass(frozen=True)
class NewKey:
    info: KeyInfo
    secret: str = field(repr=False)


class ApiKeyService:
    """Bootstrap keys plus the store's keys: authenticate, list, create, delete."""

    def __init__(
        self,
        bootstrap: Sequence[BootstrapKey],
        store: ApiKeyStore,
        *,
        hasher: Executor | None = None,
        clock: Callable[[], datetime] = utc_now,
        cache: VerifiedCache | None = None,
        verify: Callable[[str, str], bool] | None = None,
    ) -> None:
        self._bootstrap = {key.name: key for key in bootstrap}
        self._verify = verify or verify_password
        self._store = store
        self._hasher = hasher
        self._clock = clock
        self._cache = cache or VerifiedCache()

    async def authenticate(self, name: str, secret: str) -> Role | None:
        """The key's role when `secret` is right; None otherwise. Bootstrap, stored and
        unknown names cost the same: one store read when the name could be a stored
        key's, one verify (the decoy's for an unknown name)."""
        stored = await self._store.get(name) if is_api_key_name(name) else None
        boot = self._bootstrap.get(name)
        role, secret_hash = (
            (boot.role, boot.secret_hash)
            if boot is not None
            else (stored.role, stored.secret_hash)
            if stored is not None
            else (None, DECOY_HASH)
        )
        if role is not None and self._cache.hit(name, secret_hash, secret):
            return role
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(self._hasher, self._verify, secret_hash, secret):
            return None
        if role is None:
            return None
        self._cache.remember(name, secret_hash, secret)
        return role

    async def list(self) -> list[KeyInfo]:
        stored = [KeyInfo(k.name, k.role, "api", k.created_at) for k in await self._store.list()]
        booted = [KeyInfo(k.name, k.role, "bootstrap") for k in self._bootstrap.values()]
        return sorted(booted + stored, key=lambda k: (k.source != "bootstrap", k.name))

    async def create(self, name: str, role: Role) -> NewKey:
        if not is_api_key_name(name):
            raise BadRequest(
                "name must be 1-63 lowercase alphanumerics or '-', starting and ending alphanumeric"
            )
        if name in self._bootstrap:
            raise AlreadyExists(f"api key {name} is defined in MANAGEMENT_API_KEYS_FILE")
        secret = new_password()
        loop = asyncio.get_running_loop()
        secret_hash = await loop.run_in_executor(self._hasher, hash_password, secret)
        stored = await self._store.create(ApiKey(name, role, secret_hash, self._clock()))
        return NewKey(KeyInfo(stored.name, stored.role, "api", stored.created_at), secret)

    async def delete(self, name: str) -> bool:
        if name in self._bootstrap:
            raise BadRequest(
                f"api key {name} is defined in MANAGEMENT_API_KEYS_FILE: remove it there"
            )
        return await self._store.delete(name)
