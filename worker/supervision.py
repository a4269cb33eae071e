"""Every long-lived task of a worker runs here and is watched.

A loop of a worker is meant to run until the worker stops. One that ends before
that, by an exception or by returning, is a failure nobody must miss: it is logged
with its traceback and the worker is told (``on_failure``), which takes the worker
down with a non-zero exit rather than leave it looking healthy while its prompts
wait on a dead loop (arq's own loop does the same with a task's error: it calls
``t.result()``). A crashed worker's chunks go to other workers within the claim TTL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("chatgptes.worker")


class Supervisor:
    def __init__(self, on_failure: Callable[[str, BaseException | None], None]) -> None:
        self.on_failure = on_failure
        self.failed: str | None = None  # the first loop that died, and how
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False

    def start(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Runs ``loop()`` as the task ``name``, watched until ``stop``."""
        if name in self._tasks:
            raise RuntimeError(f"a loop named {name!r} is running already")

        async def watched() -> None:
            await loop()

        task = asyncio.create_task(watched(), name=name)
        task.add_done_callback(self._ended)
        self._tasks[name] = task

    @property
    def running(self) -> list[str]:
        return [name for name, task in self._tasks.items() if not task.done()]

    def _ended(self, task: asyncio.Task[None]) -> None:
        if self._stopping or task.cancelled():
            return
        error = task.exception()
        name = task.get_name()
        how = f"{type(error).__name__}" if error is not None else "returned"
        if self.failed is None:
            self.failed = f"{name} loop died ({how})"
        log.error("worker.loop_died", loop=name, how=how, exc_info=error)
        self.on_failure(name, error)

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
