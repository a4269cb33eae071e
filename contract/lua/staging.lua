--[[
  Shared by the scripts that write a batch while it is staged (included, not run alone).

  A staged batch is ``validating``: its record names the enqueue that owns it and
  when that one last wrote (``touched_ms``, Redis's clock, so producers on hosts
  with different clocks agree on how long a staging has been idle).
]]
--- @include "clock"
-- Whether ``owner`` still holds the staged batch; if so, notes that it wrote now.
local function still_owns(meta, owner)
  local state, held = unpack(redis.call('HMGET', meta, 'state', 'owner'))
  if state ~= 'validating' or held ~= owner then return false end
  redis.call('HSET', meta, 'touched_ms', now_ms())
  return true
end
