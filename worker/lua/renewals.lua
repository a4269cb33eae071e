--[[
  Renewing claims, for beat.lua (included, not run alone; after
  policy.lua where leases are renewed).

  Renewals run when Redis is at maxmemory too: Redis refuses a script under OOM only at
  its first write if that write may grow memory, never in the middle, so a renewal
  opens with a PEXPIRE (which does not grow memory) and everything after goes through.
  Losing every claim to a full Redis would only make workers send again what another
  worker would then send too.
]]
-- Extends the chunk claims still held (arq's in-progress key holds the token, the held
-- set when it lapses). A claim that is not there any more is lost, never taken back
-- (BullMQ's extendLock never re-creates a lock): another worker may have taken the chunk
-- and sent its prompts meanwhile. When it lapsed and nobody took it yet, the holder is
-- alive all the same (it beats): its lapse is no death, and the chunk's lapses forget it.
-- Returns the IDs of the chunks lost.
local function renew_chunk_claims(held, lapses, ttl, prefix, first, count)
  local lost = {}
  for i = first, first + 2 * count - 1, 2 do
    local id, token = ARGV[i], ARGV[i + 1]
    local holder = redis.call('GET', prefix .. id)
    if holder == token then
      redis.call('PEXPIRE', prefix .. id, ttl)
      redis.call('ZADD', held, 'XX', now + ttl, id)
    else
      lost[#lost + 1] = id
      if holder == false and redis.call('ZSCORE', held, id)
          and redis.call('HINCRBY', lapses, id, -1) <= 0 then
        redis.call('HDEL', lapses, id)
      end
    end
  end
  return lost
end
-- Extends the leases still held, the probes' first (their identity's probe mark is
-- extended too). A lease whose holder looked dead was reaped (its slot given back): it is
-- lost, never brought back. Returns the tokens lost.
local function renew_lease_tokens(ttl, first, probes, count)
  local lost = {}
  for i = first, first + count - 1 do
    local token = ARGV[i]
    if redis.call('ZSCORE', LEASES, token) then
      redis.call('ZADD', LEASES, 'XX', now + ttl, token)
      local name = i < first + probes and identity_of(token)
      if name and probe_out(name) then redis.call('HSET', PROBE, name, now + ttl) end
    else
      lost[#lost + 1] = token
    end
  end
  return lost
end
