"""Per-caller rates (creations, failed authentications): a token bucket per key (a caller group)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`per_minute` creations per key, bursting up to `per_minute`; 0 disables it.

    Buckets that have refilled are forgotten, so memory follows the number of
    recently active callers, not every caller ever seen.
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._last_sweep = clock()

    def acquire(self, key: str) -> float:
        """Take a token: 0.0 when allowed, else seconds until one is available."""
        if self._capacity <= 0:
            return 0.0
        now = self._clock()
        self._sweep(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._capacity, now)
        bucket.tokens = min(self._capacity, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate

    def wait(self, key: str) -> float:
        """Seconds until `key` has a token again (0.0: now), without taking one."""
        bucket = self._buckets.get(key)
        if self._capacity <= 0 or bucket is None:
            return 0.0
        now = self._clock()
        tokens = min(self._capacity, bucket.tokens + (now - bucket.updated) * self._rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self._rate

    def _sweep(self, now: float) -> None:
        if now - self._last_sweep < 60.0:
            return
        self._last_sweep = now
        full_after = self._capacity / self._rate
        for key in [k for k, b in self._buckets.items() if now - b.updated >= full_after]:
            del self._buckets[key]


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
