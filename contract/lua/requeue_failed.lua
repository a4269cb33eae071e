--[[
  ``retry``: puts failed prompts back to queued, forgetting their result and attempts,
  and puts the batch back in progress; only while the batch is ``in_progress`` or
  ``completed``. A batch that was cancelled or expired (or is being stopped) keeps its
  history: nothing is moved.

  One chunk carries a prompt at a time: a failed prompt that a chunk of the batch still
  in the queue (waiting or held: its other prompts still run) carries goes back to
  queued and that chunk runs it; the others go in new chunks. The caller says which
  were carried when it looked; if one is not any more (its chunk ended meanwhile),
  nothing is written and the caller looks again.

  KEYS[1] meta, KEYS[2] states, KEYS[3] counts, KEYS[4] results, KEYS[5] attempts,
  KEYS[6] the batch's chunks set, KEYS[7] the arq queue, KEYS[8] requests, KEYS[9] the
  queue's work marker, KEYS[10] the queue's active batches, KEYS[11] the queue's held
  chunks, then the arq job key of each carrier, then the arq job key of each new chunk
  ARGV[1] now (ISO), ARGV[2] ttl (s), ARGV[3] batch ID, ARGV[4] how many carriers,
  ARGV[5] how many carried indices, then the carriers' IDs, the carried indices, then per
  new chunk: its ID, its arq job, how many indices it carries, those indices

  Returns {the batch's state before, how many prompts were moved (-1: look again)}. A
  new chunk none of whose prompts is still failed (another retry took them) is not
  queued.
]]
--- @include "prompt_states"
--- @include "queue"
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'in_progress' and state ~= 'completed' then return {state or false, 0} end
local ttl, carriers, carried_count = tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5])
local carried = {}
for n = 1, carriers do
  local id = ARGV[5 + n]
  if in_queue(KEYS[7], KEYS[11], id) then
    for _, idx in ipairs(chunk_indices(redis.call('GET', KEYS[11 + n])) or {}) do
      carried[tostring(idx)] = true
    end
  end
end
local function retried(idx)
  redis.call('HDEL', KEYS[4], idx)
  redis.call('HDEL', KEYS[5], idx)
  move(KEYS[2], KEYS[3], idx, 0)
end
local a = 6 + carriers
for j = a, a + carried_count - 1 do
  if state_of(KEYS[2], ARGV[j]) == 4 and not carried[ARGV[j]] then return {state, -1} end
end
local moved = 0
for j = a, a + carried_count - 1 do
  if state_of(KEYS[2], ARGV[j]) == 4 then retried(ARGV[j]); moved = moved + 1 end
end
a = a + carried_count
local first = queue_front(KEYS[7])
local queued = 0
for i = 12 + carriers, #KEYS do
  local id, job, count = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local any = false
  for j = a + 3, a + 2 + count do
    local idx = ARGV[j]
    if state_of(KEYS[2], idx) == 4 and not carried[idx] then
      retried(idx)
      moved = moved + 1
      any = true
    end
  end
  a = a + 3 + count
  if any then
    redis.call('SET', KEYS[i], job, 'EX', ttl)
    enqueue_chunk(KEYS[7], first + queued, id, ttl)
    redis.call('SADD', KEYS[6], id)
    queued = queued + 1
  end
end
if moved > 0 then
  redis.call('HSET', KEYS[1], 'state', 'in_progress', 'retried_at', ARGV[1])
  redis.call('HDEL', KEYS[1], 'completed_at')
  for _, key in ipairs({KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[8]}) do
    redis.call('EXPIRE', key, ttl)
  end
  mark_active(KEYS[10], ARGV[3], now_ms(), ttl)
  work_added(KEYS[9], queued, ttl)
end
return {state, moved}
