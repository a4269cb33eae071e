"""The worker's one switch: new, running, draining, stopped; a wrong transition is refused.

Every part that must stop taking work when the worker drains (the chunk intake, the
lease broker, a prompt backing off) reads this one object, never a flag of its own.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable

from contract.errors import ServiceError


class State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    DRAINING = "draining"  # takes nothing more; what was sent finishes; the rest goes back
    STOPPED = "stopped"


class LifecycleError(ServiceError, RuntimeError):
    """A transition the lifecycle does not allow (starting twice, say)."""


class Lifecycle:
    def __init__(self) -> None:
        self.state = State.NEW
        self.draining = asyncio.Event()  # set from DRAINING on: waits end at once
        self._on_drain: list[Callable[[], None]] = []

    @property
    def running(self) -> bool:
        return self.state is State.RUNNING

    def on_drain(self, callback: Callable[[], None]) -> None:
        """Calls ``callback`` once, when the worker starts draining."""
        self._on_drain.append(callback)

    def start(self) -> None:
        if self.state is not State.NEW:
            raise LifecycleError(f"cannot start a worker that is {self.state.value}")
        self.state = State.RUNNING

    def drain(self) -> bool:
        """Stops taking work; True the first time, False if it was draining already."""
        if self.state in (State.DRAINING, State.STOPPED):
            return False
        self.state = State.DRAINING
        self.draining.set()
        for callback in self._on_drain:
            callback()
        return True

    def stop(self) -> None:
        self.drain()
        self.state = State.STOPPED
