--[[
  Claims a batch ID for one enqueue, or says which batch holds it. The ID is free when
  no batch has it, or when its batch is still ``validating`` (staged, never published)
  and either this owner holds it or its staging has sat idle longer than ARGV[3] (the
  enqueue that staged it died). A claim clears what the ID held and writes the batch
  record: ``validating``, its owner, when it was last written (Redis's clock).

  KEYS[1] meta, KEYS[2..] the batch's other keys (cleared)
  ARGV[1] owner token, ARGV[2] staging TTL (s), ARGV[3] idle (ms) after which a
  staging may be taken, ARGV[4..] field, value pairs of the record

  Returns {1} when claimed, or {0, the state of the batch that holds the ID}.
]]
--- @include "staging"
local state, owner, touched = unpack(redis.call('HMGET', KEYS[1], 'state', 'owner', 'touched_ms'))
if state then
  local idle = now_ms() - (tonumber(touched) or 0)
  if state ~= 'validating' or (owner ~= ARGV[1] and idle <= tonumber(ARGV[3])) then
    return {0, state}
  end
end
redis.call('DEL', unpack(KEYS))
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('HSET', KEYS[1], 'state', 'validating', 'owner', ARGV[1], 'touched_ms', now_ms())
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {1}
