--[[
  Gives back a batch ID its enqueue claimed but will not publish (a bad line found
  after the first parts were staged, an interruption): everything staged goes, if
  this enqueue still owns it. Staged arq jobs are left to expire with the staging
  TTL: they are in no queue.

  KEYS[1] meta, KEYS[2..] the batch's other keys
  ARGV[1] owner token

  Returns 1 when released, 0 when the batch was not this enqueue's to release.
]]
local state, owner = unpack(redis.call('HMGET', KEYS[1], 'state', 'owner'))
if state ~= 'validating' or owner ~= ARGV[1] then return 0 end
redis.call('DEL', unpack(KEYS))
return 1
