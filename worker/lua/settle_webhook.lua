--[[
  Records how one delivery of an event to one endpoint went, the moment it went, only
  for the worker that holds that claim (a worker whose claim lapsed and was taken
  changes nothing).

  delivered: the endpoint took it; it leaves the endpoint's queue.
  retry:     it did not; the next attempt at this endpoint is due at ARGV[5].
  give_up:   72 hours of attempts are over; the event is listed among the failed ones.
  gone:      the endpoint answered 410 Gone: it is disabled, its queue emptied.

  The endpoint's health follows (``failing_since``, ``last_error``, ``last_ok``,
  ``disabled``). An event every endpoint is done with is deleted, unless it was given
  up somewhere (it is then kept, and listed, for ARGV[8] seconds).

  KEYS[1] the endpoint's queue, KEYS[2] the event's key, KEYS[3] the failed events,
  KEYS[4] the endpoints' health
  ARGV[1] event ID, ARGV[2] the endpoint's key, ARGV[3] the claim's token, ARGV[4] how,
  ARGV[5] next attempt (ms), ARGV[6] the error (empty when delivered), ARGV[7] now (ms),
  ARGV[8] how long a given-up event is kept (s), ARGV[9] how many given-up events are
  kept, ARGV[10] the endpoint's label

  Returns 1 if recorded, 0 if the claim was no longer this worker's.
]]
local queue, event, failed, health = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, endpoint, how, now = ARGV[1], ARGV[2], ARGV[4], ARGV[7]
if redis.call('HGET', event, 'claim:' .. endpoint) ~= ARGV[3] then return 0 end
redis.call('HDEL', event, 'claim:' .. endpoint)

local function add_to(field)
  local list = redis.call('HGET', event, field) or ''
  redis.call('HSET', event, field, list == '' and endpoint or list .. ' ' .. endpoint)
end

if how == 'delivered' then
  redis.call('ZREM', queue, id)
  add_to('delivered')
  redis.call('HDEL', health, endpoint .. ':failing_since')
  redis.call('HSET', health, endpoint .. ':last_ok', now)
else
  redis.call('HINCRBY', event, 'attempts', 1)
  redis.call('HINCRBY', event, 'attempts:' .. endpoint, 1)
  redis.call('HSET', event, 'last_error', ARGV[10] .. ': ' .. ARGV[6])
  redis.call('HSETNX', health, endpoint .. ':failing_since', now)
  redis.call('HSET', health, endpoint .. ':last_error', ARGV[6])
  if how == 'retry' then
    redis.call('ZADD', queue, ARGV[5], id)
    return 1
  end
  add_to('abandoned')
  if how == 'gone' then
    redis.call('HSET', health, endpoint .. ':disabled', now, endpoint .. ':disabled_why', ARGV[6])
    redis.call('DEL', queue)
  else
    redis.call('ZREM', queue, id)
    redis.call('HSET', event, 'failed_ms', now)
    redis.call('ZADD', failed, now, id)
    redis.call('ZREMRANGEBYRANK', failed, 0, -tonumber(ARGV[9]) - 1)
    redis.call('EXPIRE', failed, ARGV[8])
  end
end

-- Done everywhere? Each endpoint it goes to either took it or was given up on.
local over = ' ' .. (redis.call('HGET', event, 'delivered') or '') .. ' '
  .. (redis.call('HGET', event, 'abandoned') or '') .. ' '
for target in string.gmatch(redis.call('HGET', event, 'targets') or '', '%S+') do
  if not string.find(over, ' ' .. target .. ' ', 1, true) then return 1 end
end
if redis.call('HEXISTS', event, 'failed_ms') == 1 then
  redis.call('EXPIRE', event, ARGV[8])
else
  redis.call('DEL', event)
end
return 1
