"""argon2 off the event loop: bounded workers, a deadline-aware queue, a verified cache.

`Verifier.verify` runs one argon2 verify in a thread pool of `workers` threads. A call
waits at most `budget` seconds for a free worker, then raises `Overloaded`: a fast deny
beats an answer that arrives after EMQX's request_timeout.

`CredentialCache` remembers, per tenant, a keyed digest of the last password that
verified, tagged with the record's revision and hash: a reconnect with the same
credential skips argon2 until the record changes. The digest key is random per process
and the plaintext is never kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from tenants.hashing import verify_password
from tenants.record import Tenant

VerifyFn = Callable[[str, str], bool]
"""(password_hash, password) -> matched; CPU-bound, runs in a worker thread."""


class Overloaded(Exception):
    """No verify worker became free within the call's budget."""


@dataclass(frozen=True, slots=True)
class _Entry:
    revision: str
    password_hash: str
    digest: bytes


class CredentialCache:
    """LRU of instance id -> (revision, hash, keyed password digest)."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _digest(self, password: str) -> bytes:
        return hashlib.blake2b(password.encode(), key=self._key, digest_size=32).digest()

    def hit(self, tenant: Tenant, password: str) -> bool:
        entry = self._entries.get(tenant.instance_id)
        if entry is None:
            return False
        if entry.revision != tenant.revision or entry.password_hash != tenant.password_hash:
            del self._entries[tenant.instance_id]
            return False
        if not hmac.compare_digest(entry.digest, self._digest(password)):
            return False
        self._entries.move_to_end(tenant.instance_id)
        return True

    def remember(self, tenant: Tenant, password: str) -> None:
        if self.max_size <= 0:
            return
        entry = _Entry(tenant.revision, tenant.password_hash, self._digest(password))
        self._entries[tenant.instance_id] = entry
        self._entries.move_to_end(tenant.instance_id)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    def forget(self, instance_id: str) -> None:
        self._entries.pop(instance_id, None)

    def on_index_change(self, before: Tenant | None, after: Tenant | None) -> None:
        """A TenantIndex listener: any change to a tenant drops what we knew of it."""
        for tenant in (before, after):
            if tenant is not None:
                self.forget(tenant.instance_id)


@dataclass
class VerifierStats:
    verifications: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    overloaded: int = 0


class Verifier:
    def __init__(
        self,
        *,
        workers: int,
        cache_size: int,
        verify_fn: VerifyFn = verify_password,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers = workers
        self.cache = CredentialCache(cache_size)
        self.stats = VerifierStats()
        self._verify_fn = verify_fn
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._slots: asyncio.Semaphore | None = None
        self.busy = 0  # verifies holding a worker slot right now

    def cached(self, tenant: Tenant, password: str) -> bool:
        hit = self.cache.hit(tenant, password)
        if hit:
            self.stats.cache_hits += 1
        else:
            self.stats.cache_misses += 1
        return hit

    def remember(self, tenant: Tenant, password: str) -> None:
        self.cache.remember(tenant, password)

    async def verify(self, password_hash: str, password: str, *, budget: float) -> bool:
        """One argon2 verify in a worker; `Overloaded` if none is free within `budget`."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        slots = self._slots
        if slots.locked():
            try:
                if budget <= 0:
                    raise TimeoutError
                async with asyncio.timeout(budget):
                    await slots.acquire()
            except TimeoutError:
                self.stats.overloaded += 1
                raise Overloaded from None
        else:
            await slots.acquire()
        self.busy += 1
        loop = asyncio.get_running_loop()

        def free() -> None:
            self.busy -= 1
            slots.release()

        def release(_: Future[bool]) -> None:
            # The slot is freed when the thread is done, even if our caller was cancelled.
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(free)

        try:
            work = self._executor.submit(self._verify_fn, password_hash, password)
        except BaseException:
            free()
            raise
        self.stats.verifications += 1
        work.add_done_callback(release)
        return await asyncio.wrap_future(work)

    def close(self) -> None:
        """Let running verifies finish; drop any that have not started."""
        self._executor.shutdown(wait=True, cancel_futures=True)
