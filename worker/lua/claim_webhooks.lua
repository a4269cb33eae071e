--[[
  Claims new events from the outbox for routing, for one worker, under its token: each
  is hidden from other workers until ``until`` (its claim lapses then, and a worker that
  died mid-routing leaves it to the next one). An event already claimed by another
  worker meanwhile is skipped; one whose record expired leaves the outbox.

  KEYS[1] the outbox, KEYS[2..] the events' keys (in the order of their IDs)
  ARGV[1] now (ms), ARGV[2] until (ms), ARGV[3] the claim's token, ARGV[4..] event IDs

  Returns, per event claimed, {ID, batch ID, the endpoint keys delivered to already}.
]]
local claimed = {}
for i = 4, #ARGV do
  local id, event = ARGV[i], KEYS[i - 2]
  local due = redis.call('ZSCORE', KEYS[1], id)
  if due and tonumber(due) <= tonumber(ARGV[1]) then
    local body, batch, done = unpack(redis.call('HMGET', event, 'body', 'batch', 'delivered'))
    if body then
      redis.call('ZADD', KEYS[1], ARGV[2], id)
      redis.call('HSET', event, 'claim', ARGV[3])
      claimed[#claimed + 1] = {id, batch or '', done or ''}
    else
      redis.call('ZREM', KEYS[1], id)
    end
  end
end
return claimed
