--[[
  Shared by every script that moves prompts between states (included, not run alone).

  A prompt's state is 4 bits at its index in the batch's ``states`` bit field; its
  batch's ``counts`` hash holds how many prompts are in each state. Every transition
  goes through ``move``, so the counts stay exact.
]]
local NAMES = {[0]='queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled'}
local FINAL = 3  -- codes from here on (succeeded, failed, cancelled) are final
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
-- Returns the batch's state, and whether this call ended it.
local function finish_if_done(meta, counts, now, ttl, keys_to_keep)
  local state, total = unpack(redis.call('HMGET', meta, 'state', 'total'))
  if state == false or settled(counts) < tonumber(total) then return state, false end
  local ended = 'completed'
  if state == 'cancelling' or state == 'cancelled' then ended = 'cancelled' end
  if state == 'expiring' or state == 'expired' then ended = 'expired' end
  if state ~= ended then
    redis.call('HSET', meta, 'state', ended, ended .. '_at', now)
    for _, key in ipairs(keys_to_keep) do redis.call('EXPIRE', key, ttl) end
    return ended, true
  end
  return ended, false
end
