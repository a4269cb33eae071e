--[[
  Extends a lock only for its holder.

  KEYS[1] the lock
  ARGV[1] the holder's token, ARGV[2] ttl (ms)

  Returns 1 if it is still held (and now extended), else 0.
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
