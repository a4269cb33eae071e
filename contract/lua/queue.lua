--[[
  The arq queue and the batch registry as the contract's scripts write them (included,
  not run alone).
]]
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
