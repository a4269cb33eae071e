--[[
  A queue's chunks and the batch registry, as every script that moves them writes them
  (included, not run alone).

  A chunk of a queue is in one of two places: waiting in arq's queue (a sorted set:
  chunk ID -> its place in the round-robin), or held by a worker (``<queue>:held``:
  chunk ID -> when its claim lapses, ms, Redis's clock), its place kept aside
  (``<queue>:places``) for when it goes back. A claim takes the queue's head, wherever
  the held chunks stood. Every chunk made claimable pushes an item on the queue's work
  marker, a short list an idle worker blocks on instead of polling.
]]
--- @include "clock"
local MARKER_ITEMS = 16
-- Where new chunks join the queue: the head's score (they go round-robin beside the
-- chunks waiting), and at least 1, as arq never starts a job scored 0.
local function queue_front(queue)
  local head = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
  if head[2] then return math.max(tonumber(head[2]), 1) end
  return 1
end
-- Lists a batch in the registry at ``now_ms``; those listed more than ``ttl`` seconds
-- before are dropped, and the registry lives as long as its newest.
local function register_batch(registry, batch_id, now_ms, ttl)
  redis.call('ZADD', registry, now_ms, batch_id)
  redis.call('ZREMRANGEBYSCORE', registry, '-inf', now_ms - ttl * 1000)
  redis.call('EXPIRE', registry, ttl)
end
-- The prompt indices an arq job of a chunk carries, or nil if it is not one a script reads.
local function chunk_indices(raw)
  if not raw then return nil end
  local ok, decoded = pcall(cjson.decode, raw)
  local indices = ok and type(decoded) == 'table' and type(decoded.a) == 'table'
    and type(decoded.a[1]) == 'table' and decoded.a[1].indices
  if type(indices) ~= 'table' then return nil end
  return indices
end
-- Whether a chunk is still in its queue: waiting, or held by a worker.
local function in_queue(queue, held, id)
  return redis.call('ZSCORE', queue, id) ~= false or redis.call('ZSCORE', held, id) ~= false
end
-- Tells idle workers that ``count`` chunks may be claimed now.
local function work_added(marker, count, ttl)
  for _ = 1, math.min(count, MARKER_ITEMS) do redis.call('LPUSH', marker, 1) end
  redis.call('LTRIM', marker, 0, MARKER_ITEMS - 1)
  redis.call('EXPIRE', marker, ttl)
end
-- Adds a chunk to the queue at ``place``; the queue lives as long as what it carries.
local function enqueue_chunk(queue, place, id, ttl)
  redis.call('ZADD', queue, math.max(place, 1), id)
  redis.call('EXPIRE', queue, ttl)
end
-- A held chunk goes back to the queue where it stood (moved ``later`` places back).
local function unhold(queue, held, places, id, later, ttl)
  local place = tonumber(redis.call('HGET', places, id)) or queue_front(queue)
  redis.call('ZREM', held, id)
  redis.call('HDEL', places, id)
  enqueue_chunk(queue, place + (later or 0), id, ttl)
end
-- A chunk leaves its queue for good (every prompt of it is settled, or it is unreadable).
local function forget_chunk(queue, held, places, lapses, id)
  redis.call('ZREM', queue, id)
  redis.call('ZREM', held, id)
  redis.call('HDEL', places, id)
  redis.call('HDEL', lapses, id)
end
-- The batch may have prompts to run: the stranded sweep looks at it until it ends.
local function mark_active(active, batch_id, now_ms, ttl)
  redis.call('ZADD', active, now_ms, batch_id)
  redis.call('EXPIRE', active, ttl)
end
