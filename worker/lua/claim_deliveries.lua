--[[
  Claims the events due at one endpoint, for one worker, under its token: each is hidden
  from that endpoint's other deliverers until ``until`` (a worker that died mid-delivery
  leaves it to the next one once its claim lapses). Nothing is claimed for an endpoint
  that is disabled (it answered 410 Gone). An event whose record expired leaves the queue.

  KEYS[1] the endpoint's queue, KEYS[2] the endpoints' health, KEYS[3..] the events' keys
  (in the order of their IDs)
  ARGV[1] now (ms), ARGV[2] until (ms), ARGV[3] the claim's token, ARGV[4] the endpoint's
  key, ARGV[5..] event IDs

  Returns, per event claimed, {ID, body, attempts at this endpoint, created (ms)}.
]]
if redis.call('HEXISTS', KEYS[2], ARGV[4] .. ':disabled') == 1 then return {} end
local claimed = {}
local field = 'claim:' .. ARGV[4]
for i = 5, #ARGV do
  local id, event = ARGV[i], KEYS[i - 2]
  local due = redis.call('ZSCORE', KEYS[1], id)
  if due and tonumber(due) <= tonumber(ARGV[1]) then
    local body, attempts, created = unpack(
      redis.call('HMGET', event, 'body', 'attempts:' .. ARGV[4], 'created_ms'))
    if body then
      redis.call('ZADD', KEYS[1], ARGV[2], id)
      redis.call('HSET', event, field, ARGV[3])
      claimed[#claimed + 1] = {id, body, attempts or '0', created or ARGV[1]}
    else
      redis.call('ZREM', KEYS[1], id)
    end
  end
end
return claimed
