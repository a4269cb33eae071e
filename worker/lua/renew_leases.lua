--[[
  Extends the leases this worker still holds, and says which it lost. A lease whose
  holder looked dead was reaped (its slot given back): it is lost, never brought
  back. A probe's lease extends its identity's probe mark too.

  Runs when Redis is at maxmemory too: its first write (PEXPIRE) does not grow
  memory, and Redis refuses a script under OOM only at its first write, never in
  the middle, so the renewals after it go through. Losing every lease to a full
  Redis would only make workers send what they could not store.

  KEYS: see policy.lua
  ARGV[1] lease ttl (ms), ARGV[2] policy keys' ttl (ms), ARGV[3] how many of the tokens
  are probes' (they come first), ARGV[4..] tokens

  Returns the tokens that were lost.
]]
--- @include "policy"
redis.call('PEXPIRE', LEASES, ARGV[2])
local ttl, probes, lost = tonumber(ARGV[1]), tonumber(ARGV[3]), {}
for i = 4, #ARGV do
  local token = ARGV[i]
  if redis.call('ZSCORE', LEASES, token) then
    redis.call('ZADD', LEASES, 'XX', now + ttl, token)
    local name = i < 4 + probes and identity_of(token)
    if name and probe_out(name) then redis.call('HSET', PROBE, name, now + ttl) end
  else
    lost[#lost + 1] = token
  end
end
return lost
