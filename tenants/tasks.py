"""Ending the background tasks a context manager owns."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any, ClassVar, Self


async def cancel_and_wait(*tasks: asyncio.Task[Any]) -> None:
    """Cancel every task, then wait for each to finish (its cancellation swallowed)."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


class BackgroundTask:
    """A context manager that owns one named task: `_run` runs from enter to exit, and
    exit cancels it and waits for it to end."""

    task_name: ClassVar[str]
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name=self.task_name)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
