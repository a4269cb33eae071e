"""A chunk's whole life in the worker, in one owner: claimed, running, and how it ended.

::

    claimed ─► running ─► done          every prompt has its result: it leaves the queue
       │          ├─────► handed back   the worker drains: its unsent prompts go back
       │          ├─────► lapsed        the worker could not run it (a bug, arq's timeout):
       │          │                     back to the queue, counted as a lapse of its holder
       │          ├─────► split         its holders lapsed with it: one chunk per prompt now
       │          └─────► lost          another worker holds it (this one sent nothing more)
       ├────────────────► discarded     arq could not read it: it leaves the queue
       ├────────────────► handed back   arq's bookkeeping was refused (Redis): back as it was
       └────────────────► lost

Each end maps to what the end script does (``END``), right beside it: a chunk ends as
done only if every prompt in it is settled (the script checks again, in the step that
ends it, and hands it back otherwise), and a lost or split chunk is not this worker's to
end. A transition the diagram has no arrow for is refused (``ChunkStateError``), as the
worker's ``Lifecycle`` refuses its own.
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field

from contract.errors import ServiceError
from worker.claims import ChunkClaim


class ChunkState(enum.Enum):
    CLAIMED = "claimed"
    RUNNING = "running"
    DONE = "done"
    HANDED_BACK = "handed back"
    LAPSED = "lapsed"
    SPLIT = "split"
    LOST = "lost"
    DISCARDED = "discarded"


_ENDS = (
    ChunkState.DONE, ChunkState.HANDED_BACK, ChunkState.LAPSED, ChunkState.SPLIT,
    ChunkState.LOST,
)  # fmt: skip
ALLOWED: dict[ChunkState, tuple[ChunkState, ...]] = {
    ChunkState.CLAIMED: (
        ChunkState.RUNNING,
        ChunkState.DISCARDED,
        ChunkState.HANDED_BACK,
        ChunkState.LOST,
        ChunkState.LAPSED,
    ),
    ChunkState.RUNNING: _ENDS,
}
# What the end script does for each way a chunk ends (None: not this worker's to end).
END: dict[ChunkState, str | None] = {
    ChunkState.DONE: "done",
    ChunkState.HANDED_BACK: "hand_back",
    ChunkState.LAPSED: "lapse",
    ChunkState.DISCARDED: "discard",
    ChunkState.SPLIT: None,  # the split script ended it
    ChunkState.LOST: None,  # another worker holds it, or it left the queue
}


class ChunkStateError(ServiceError):
    """A transition of a chunk's life that its diagram does not allow."""


@dataclass(eq=False)
class HeldChunk:
    """One chunk this worker claimed, from its claim to its end."""

    claim: ChunkClaim
    batch_id: str = ""
    indices: tuple[int, ...] = ()
    state: ChunkState = ChunkState.CLAIMED
    unsettled: int = 0  # prompts still to settle (sending, waiting or backing off)
    starting: bool = True  # until its prompts are counted in ``unsettled``
    sending: set[int] = field(default_factory=set)  # indices on the wire right now
    tasks: dict[int, asyncio.Task[bool | None]] = field(default_factory=dict)
    began: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> str:
        return self.claim.key

    @property
    def ended(self) -> bool:
        return self.state not in ALLOWED

    def move(self, to: ChunkState) -> None:
        """The next state of its life; ``ChunkStateError`` for one the diagram forbids."""
        if to not in ALLOWED.get(self.state, ()):
            raise ChunkStateError(f"chunk {self.key}: {self.state.value} cannot become {to.value}")
        self.state = to

    def end_how(self, unfinished: ChunkState = ChunkState.LAPSED) -> str | None:
        """What the end script is asked to do now (None: nothing; not this worker's).

        A chunk that has not ended becomes ``unfinished`` first: a run cut short (arq's
        job timeout cancelled it, or the worker stops) is a lapse of its holder.
        """
        if self.claim.lost:
            return None
        if not self.ended:
            self.move(unfinished)
        return END[self.state]


__all__ = ["END", "ChunkState", "ChunkStateError", "HeldChunk"]
