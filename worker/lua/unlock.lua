--[[
  Releases a lock only for its holder.

  KEYS[1] the lock
  ARGV[1] the holder's token

  Returns 1 if it was released, else 0.
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
