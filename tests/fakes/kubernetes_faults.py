"""Fault injection for the Kubernetes stand-in: answers a real API server gives under
load or misconfiguration (a Status with 5xx or 429, a slow answer, RBAC's 403)."""

from __future__ import annotations

from collections import deque
from typing import Any


class Faults:
    """What the next requests (of one verb, or of any) suffer."""

    def __init__(self) -> None:
        self._failures: deque[tuple[int, str | None]] = deque()
        self._delays: deque[tuple[float, str | None]] = deque()
        self._forbidden: set[str] = set()

    def fail_next(self, n: int = 1, status: int = 500, *, verb: str | None = None) -> None:
        """The next `n` requests (of `verb`, if given) answer with a `status` Status."""
        self._failures.extend([(status, verb)] * n)

    def delay_next(self, n: int, seconds: float, *, verb: str | None = None) -> None:
        """The next `n` requests (of `verb`, if given) wait `seconds` before being served."""
        self._delays.extend([(seconds, verb)] * n)

    def forbid(self, verb: str) -> None:
        """RBAC: `verb` (get, list, watch, create, update, patch, delete) is refused (403)."""
        self._forbidden.add(verb)

    def allow(self, verb: str) -> None:
        self._forbidden.discard(verb)

    def forbids(self, verb: str) -> bool:
        return verb in self._forbidden

    def failure_for(self, verb: str) -> int | None:
        """The status the next request of `verb` must answer with, if any (consumed)."""
        found: int | None = _take(self._failures, verb)
        return found

    def delay_for(self, verb: str) -> float | None:
        """How long the next request of `verb` must wait, if at all (consumed)."""
        found: float | None = _take(self._delays, verb)
        return found


def _take(queue: deque[tuple[Any, str | None]], verb: str) -> Any:
    """Pop the first entry meant for `verb` (or for any verb); None when there is none."""
    for index, (value, wanted) in enumerate(queue):
        if wanted is None or wanted == verb:
            del queue[index]
            return value
    return None
