"""The verify queue: workers fed without the event loop, predictive shedding, and
verify threads that yield the CPU to the loop."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator

import pytest

from exhook.verifier import Overloaded, Verifier


class Sleepy:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0
        self.priorities: list[int] = []

    def __call__(self, password_hash: str, password: str) -> bool:
        self.calls += 1
        self.priorities.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        time.sleep(self.seconds)
        return True


@pytest.fixture
def made() -> Iterator[list[Verifier]]:
    verifiers: list[Verifier] = []
    yield verifiers
    for verifier in verifiers:
        verifier.close()


async def test_a_hopeless_queue_is_shed_at_once(made: list[Verifier]) -> None:
    fn = Sleepy(0.1)
    verifier = Verifier(workers=1, cache_size=0, verify_fn=fn)
    made.append(verifier)
    assert await verifier.verify("h", "p", budget=1)  # learns: ~0.1 s a verify
    queued = [asyncio.create_task(verifier.verify("h", "p", budget=2)) for _ in range(3)]
    await asyncio.sleep(0.02)
    started = time.monotonic()
    with pytest.raises(Overloaded):  # 3 ahead x 0.1 s > 0.15 s: no point waiting
        await verifier.verify("h", "p", budget=0.15)
    assert time.monotonic() - started < 0.05
    assert all(await asyncio.gather(*queued))
    assert fn.calls == 4
    assert verifier.stats.overloaded == 1


async def test_queued_verifies_run_back_to_back(made: list[Verifier]) -> None:
    fn = Sleepy(0.02)
    verifier = Verifier(workers=2, cache_size=0, verify_fn=fn)
    made.append(verifier)
    started = time.monotonic()
    assert all(await asyncio.gather(*(verifier.verify("h", "p", budget=5) for _ in range(20))))
    # 20 x 20 ms on 2 workers is 0.2 s when no worker waits for the loop between jobs.
    assert time.monotonic() - started < 0.6
    assert verifier.busy == 0


async def test_verify_threads_run_below_the_loop_priority(made: list[Verifier]) -> None:
    fn = Sleepy(0)
    verifier = Verifier(workers=1, cache_size=0, verify_fn=fn)
    made.append(verifier)
    await verifier.verify("h", "p", budget=1)
    loop_priority = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert fn.priorities[0] > loop_priority
