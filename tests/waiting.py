"""Waiting in tests on a condition, never on the clock: poll until it holds, fail the
test at a deadline that a passing run never reaches."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(
    condition: Callable[[], bool], timeout: float = 5.0, interval: float = 0.02
) -> None:
    """Poll `condition` until it holds; fail the test at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(interval)
