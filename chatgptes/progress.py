"""Progress bars (rich) for the terminal; silent when stderr is not a terminal.

rich is imported only when a bar is drawn: a piped or scripted command skips it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from contract.models import BatchStatus

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


def _terminal() -> Console | None:
    """A console on stderr if stderr is a terminal, else None."""
    if not sys.stderr.isatty():
        return None
    from rich.console import Console

    console = Console(stderr=True)
    return console if console.is_terminal else None


def _bar(console: Console) -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


@contextmanager
def enqueue_progress() -> Iterator[Callable[[int], None] | None]:
    """A callback counting enqueued prompts, or None off a terminal."""
    console = _terminal()
    if console is None:
        yield None
        return
    with _bar(console) as bar:
        task = bar.add_task("enqueue", total=None, detail="")
        yield lambda done: bar.update(task, completed=done)


@contextmanager
def wait_progress(batch_id: str) -> Iterator[Callable[[BatchStatus], None]]:
    """A callback showing each polled status: a live bar on a terminal, else a line a change."""
    console = _terminal()
    if console is None:
        yield status_changes(batch_id, lambda line: print(line, file=sys.stderr))
        return
    with _bar(console) as bar:
        task = bar.add_task(batch_id, total=None, detail="")

        def update(status: BatchStatus) -> None:
            bar.update(task, total=status.total, completed=status.finished, detail=_summary(status))

        yield update


def status_changes(batch_id: str, write: Callable[[str], object]) -> Callable[[BatchStatus], None]:
    """A callback writing ``<batch>: <finished>/<total> <counts>`` each time the counts
    change: progress for a pipe or a log, where a live bar cannot be drawn."""
    last: list[str] = []

    def show(status: BatchStatus) -> None:
        line = _summary(status)
        if not last or last[-1] != line:
            last.append(line)
            write(f"{batch_id}: {status.finished}/{status.total} {line}")

    return show


def _summary(status: BatchStatus) -> str:
    parts = [f"ok {status.succeeded}", f"failed {status.failed}", f"running {status.in_progress}"]
    if status.waiting:
        parts.append(f"waiting for capacity {status.waiting}")
    if status.cancelled:
        parts.append(f"cancelled {status.cancelled}")
    return ", ".join(parts)
