"""Where each prompt of a batch is, and where the batch as a whole is.

A prompt's state is 4 bits at its index in the batch's state bit field; every
transition goes through one Lua helper (``contract/lua/prompt_states.lua``) that also
moves the batch's counts, so
the counts are exact and reading them costs the same at 50 prompts as at 200,000.
A final state (succeeded, failed, cancelled) is only left by an explicit retry,
so a prompt that runs twice (a worker died mid-chunk) is counted once.

The batch's lifecycle follows OpenAI's Batch API::

    validating ─► in_progress ─► completed
        │              ├──► expiring ─► expired     (its completion window passed)
        │              └──► cancelling ─► cancelled
        └──► failed                                  (its input was refused, over HTTP)

``expiring`` is this service's own name for the short while its unsent prompts are
being ended (OpenAI's API shows it as ``finalizing``). A batch that ends
``cancelled`` or ``expired`` keeps the results of the prompts that did finish.
"""

from __future__ import annotations

from typing import Literal

PromptState = Literal["queued", "running", "waiting", "succeeded", "failed", "cancelled"]
PROMPT_STATES: tuple[PromptState, ...] = (
    "queued",
    "running",
    "waiting",
    "succeeded",
    "failed",
    "cancelled",
)
CODE: dict[str, int] = {state: code for code, state in enumerate(PROMPT_STATES)}
FINAL_STATES: tuple[PromptState, ...] = ("succeeded", "failed", "cancelled")

BatchState = Literal[
    "validating", "failed", "in_progress", "completed", "expiring", "expired", "cancelling",
    "cancelled",
]  # fmt: skip
ENDED_BATCH_STATES: tuple[BatchState, ...] = ("completed", "failed", "expired", "cancelled")
# Why a batch stops early, and the state it is in while its unsent prompts are ended.
STOPPING: dict[str, BatchState] = {"cancelled": "cancelling", "expired": "expiring"}
