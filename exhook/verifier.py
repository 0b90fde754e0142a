"""argon2 off the event loop: bounded workers, a deadline-aware queue, a verified cache.

`Verifier.verify` runs one argon2 verify in a thread pool of `workers` threads. A call
waits at most `budget` seconds for a free worker, then raises `Overloaded`: a fast deny
beats an answer that arrives after EMQX's request_timeout.

`CredentialCache` remembers, per username (an instance id or a scoped credential's
`<instance id>.<cred id>`), a keyed digest of the last password that verified, tagged
with the record's revision and the hash it matched: a reconnect with the same credential
skips argon2 until the record changes. The digest key is random per process and the
plaintext is never kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import threading
import time
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
    """LRU of username -> (revision, hash, keyed password digest). The username defaults
    to the instance id and the hash to the instance's own."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _digest(self, password: str) -> bytes:
        return hashlib.blake2b(password.encode(), key=self._key, digest_size=32).digest()

    def hit(
        self,
        tenant: Tenant,
        password: str,
        *,
        username: str | None = None,
        password_hash: str | None = None,
    ) -> bool:
        key = tenant.instance_id if username is None else username
        entry = self._entries.get(key)
        if entry is None:
            return False
        expected = tenant.password_hash if password_hash is None else password_hash
        if entry.revision != tenant.revision or entry.password_hash != expected:
            del self._entries[key]
            return False
        if not hmac.compare_digest(entry.digest, self._digest(password)):
            return False
        self._entries.move_to_end(key)
        return True

    def remember(
        self,
        tenant: Tenant,
        password: str,
        *,
        username: str | None = None,
        password_hash: str | None = None,
    ) -> None:
        if self.max_size <= 0:
            return
        key = tenant.instance_id if username is None else username
        matched = tenant.password_hash if password_hash is None else password_hash
        self._entries[key] = _Entry(tenant.revision, matched, self._digest(password))
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    def forget(self, username: str) -> None:
        self._entries.pop(username, None)

    def on_index_change(self, before: Tenant | None, after: Tenant | None) -> None:
        """A TenantIndex listener: any change to a tenant drops what we knew of each of
        its usernames (its own and its scoped credentials')."""
        for tenant in (before, after):
            if tenant is not None:
                for username in tenant.usernames():
                    self.forget(username)


@dataclass
class VerifierStats:
    verifications: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    overloaded: int = 0


WORKER_NICE = 10
"""How much lower the verify threads' scheduling priority is than the event loop's."""


def _yield_to_the_loop() -> None:
    """Runs in each verify thread: lower its priority (Linux: nice is per thread), so
    that when the CPU is short (a reconnect storm) the event loop, which answers every
    call (and sheds what cannot be verified in time), gets the CPU first and argon2
    uses what is left. Where this is not supported the thread simply keeps its priority.
    """
    with contextlib.suppress(AttributeError, OSError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + WORKER_NICE)


class Verifier:
    """argon2 in `workers` threads fed straight from the executor's FIFO queue.

    A call whose verify cannot start at once (every worker busy) waits at most `budget`
    seconds in the queue; if no worker has picked it up by then it is withdrawn and the
    call gets `Overloaded`, at once when the verifies queued ahead of it (at the mean
    verify time so far) could not all start within its budget. Workers go from one
    verify to the next without a round trip through the event loop (which, while busy
    serving gRPC, left them idle between verifies: 650/s through the loop vs 1,200/s
    raw, 2 workers). Their threads run at a lower priority than the loop (see
    `_yield_to_the_loop`).
    """

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
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="argon2", initializer=_yield_to_the_loop
        )
        self._lock = threading.Lock()
        self._outstanding = 0  # verifies submitted and neither finished nor withdrawn
        self._mean_seconds = 0.0  # moving average of one verify's duration (0: none yet)
        self.busy = 0  # verifies running in a worker right now

    def cached(
        self,
        tenant: Tenant,
        password: str,
        *,
        username: str | None = None,
        password_hash: str | None = None,
    ) -> bool:
        """Whether `password` verified for `username` (default: the instance id) against
        `password_hash` (default: the instance's) at the tenant's current revision."""
        hit = self.cache.hit(tenant, password, username=username, password_hash=password_hash)
        if hit:
            self.stats.cache_hits += 1
        else:
            self.stats.cache_misses += 1
        return hit

    def remember(
        self,
        tenant: Tenant,
        password: str,
        *,
        username: str | None = None,
        password_hash: str | None = None,
    ) -> None:
        self.cache.remember(tenant, password, username=username, password_hash=password_hash)

    def _run(self, password_hash: str, password: str) -> bool:
        """In a worker thread: one verify, accounted for under the lock."""
        with self._lock:
            self.busy += 1
            self.stats.verifications += 1
        started = time.perf_counter()
        try:
            return self._verify_fn(password_hash, password)
        finally:
            took = time.perf_counter() - started
            with self._lock:
                self.busy -= 1
                self._outstanding -= 1
                mean = self._mean_seconds
                self._mean_seconds = took if mean == 0.0 else mean + (took - mean) / 16

    def _withdraw(self, work: Future[bool]) -> bool:
        """Take back a verify no worker has started; False if one already has."""
        if not work.cancel():
            return False
        with self._lock:
            self._outstanding -= 1
        return True

    async def verify(self, password_hash: str, password: str, *, budget: float) -> bool:
        """One argon2 verify in a worker; `Overloaded` if none starts it within `budget`."""
        with self._lock:
            free = self._outstanding < self.workers
            # Waiting is pointless when the verifies queued ahead cannot all start
            # within the budget: shed at once (a storm then costs the loop one answer
            # per call, not a timer and a queued job each).
            ahead = self._outstanding - self.workers + 1
            if not free and (budget <= 0 or ahead * self._mean_seconds > budget * self.workers):
                self.stats.overloaded += 1
                raise Overloaded
            self._outstanding += 1
        try:
            work = self._executor.submit(self._run, password_hash, password)
        except BaseException:
            with self._lock:
                self._outstanding -= 1
            raise
        waiter = asyncio.wrap_future(work)
        try:
            if not free:
                done, _ = await asyncio.wait((waiter,), timeout=budget)
                if not done and self._withdraw(work):
                    self.stats.overloaded += 1
                    raise Overloaded
            # Started (or about to: a worker was free): it ends within one verify.
            return await asyncio.shield(waiter)
        except asyncio.CancelledError:
            # The caller is gone: a verify not yet started is dropped; a running one
            # keeps its worker until it ends (the bound holds).
            self._withdraw(work)
            raise

    def close(self) -> None:
        """Let running verifies finish; drop any that have not started."""
        self._executor.shutdown(wait=True, cancel_futures=True)
