"""Where each prompt of a batch is, and where the batch as a whole is.

A prompt's state is 4 bits at its index in the batch's state bit field; every
transition goes through one Lua helper that also moves the batch's counts, so
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

# Shared by every script that moves prompts: KEYS[states], KEYS[counts] by name.
LUA_PRELUDE = """
local NAMES = {[0]='queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled'}
local FINAL = 3
local function state_of(states, idx)
  return redis.call('BITFIELD', states, 'GET', 'u4', '#' .. idx)[1]
end
local function move(states, counts, idx, to)
  local from = redis.call('BITFIELD', states, 'SET', 'u4', '#' .. idx, to)[1]
  if from ~= to then
    redis.call('HINCRBY', counts, NAMES[from], -1)
    redis.call('HINCRBY', counts, NAMES[to], 1)
  end
  return from
end
-- A key made by this call gets the batch's TTL (EXPIRE at publish missed it: it did not exist).
local function keep(key, ttl)
  if redis.call('TTL', key) == -1 then redis.call('EXPIRE', key, ttl) end
end
local function settled(counts)
  local c = redis.call('HMGET', counts, 'succeeded', 'failed', 'cancelled')
  return (tonumber(c[1]) or 0) + (tonumber(c[2]) or 0) + (tonumber(c[3]) or 0)
end
-- Ends the batch when its last prompt settles: cancelled (or expired) if it was stopping.
local function finish_if_done(meta, counts, now, ttl, keys_to_keep)
  local state, total = unpack(redis.call('HMGET', meta, 'state', 'total'))
  if state == false or settled(counts) < tonumber(total) then return state end
  local ended = 'completed'
  if state == 'cancelling' or state == 'cancelled' then ended = 'cancelled' end
  if state == 'expiring' or state == 'expired' then ended = 'expired' end
  if state ~= ended then
    redis.call('HSET', meta, 'state', ended, ended .. '_at', now)
    for _, key in ipairs(keys_to_keep) do redis.call('EXPIRE', key, ttl) end
  end
  return ended
end
"""
