--[[
  Routes one claimed event from the outbox to the queue of each endpoint it goes to,
  only for the worker that holds its claim. From then on each endpoint's deliveries go
  on apart from the others': a hanging endpoint delays only its own queue.

  An endpoint that took the event already (an event from before endpoints had queues)
  is left out; an event that goes nowhere (its project's endpoints are gone) is dropped.
  A queue holds at most ARGV[5] events: past it the oldest waiting is dropped and counted
  in the endpoint's health (``<key>:dropped``).

  KEYS[1] the outbox, KEYS[2] the event's key, KEYS[3] the endpoints' health,
  KEYS[4..] the queue of each endpoint (in the order of ARGV[6..])
  ARGV[1] event ID, ARGV[2] the claim's token, ARGV[3] now (ms), ARGV[4] how long a
  queue is kept (s), ARGV[5] a queue's most events, ARGV[6..] the endpoints' keys

  Returns {endpoints routed to, events dropped}, or false if the claim was not this
  worker's.
]]
if redis.call('HGET', KEYS[2], 'claim') ~= ARGV[2] then return false end
local done = ' ' .. (redis.call('HGET', KEYS[2], 'delivered') or '') .. ' '
local targets, dropped = {}, 0
for i = 4, #KEYS do
  local endpoint = ARGV[i + 2]
  if not string.find(done, ' ' .. endpoint .. ' ', 1, true) then
    redis.call('ZADD', KEYS[i], 'NX', ARGV[3], ARGV[1])
    redis.call('EXPIRE', KEYS[i], ARGV[4])
    local over = redis.call('ZCARD', KEYS[i]) - tonumber(ARGV[5])
    if over > 0 then
      redis.call('ZPOPMIN', KEYS[i], over)
      redis.call('HINCRBY', KEYS[3], endpoint .. ':dropped', over)
      dropped = dropped + over
    end
    targets[#targets + 1] = endpoint
  end
end
redis.call('ZREM', KEYS[1], ARGV[1])
if #targets == 0 then
  redis.call('DEL', KEYS[2])
else
  redis.call('HSET', KEYS[2], 'targets', table.concat(targets, ' '))
  redis.call('HDEL', KEYS[2], 'claim')
end
return {#targets, dropped}
