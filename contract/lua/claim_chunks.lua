--[[
  Claims for one worker the first due chunks that no worker holds, each under a
  token of its own (the value of arq's in-progress key, which lives a claim TTL and
  is renewed by its holder). Counts the claim in the chunk's run counter (claims
  minus clean ends), so the count before this claim is how many earlier holders died
  with it.

  A suspect (a chunk that many holders died with) is run alone: it is taken only by a
  worker that holds nothing else, and then alone; a worker holding other chunks
  passes it by and is told one is waiting, so that it empties its hands for it.

  KEYS[1] queue, KEYS[2] chunk run counters (hash: chunk ID -> count)
  ARGV[1] now (ms), ARGV[2] how many, ARGV[3] arq's in-progress key prefix,
  ARGV[4] how many queue entries to look at, ARGV[5] token prefix, ARGV[6] claim ttl (ms),
  ARGV[7] run counters' ttl (s), ARGV[8] deaths that make a suspect, ARGV[9] 1 if this
  worker holds nothing (it may take a suspect)

  Returns {1 if a suspect was passed by, then per claimed chunk: its ID, its token, how
  many holders died with it}.
  (A score of 0 or less is not a chunk: arq would never start it, so it is skipped.)
]]
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(0', ARGV[1], 'LIMIT', 0, tonumber(ARGV[4]))
local suspect_at, free_hands = tonumber(ARGV[8]), ARGV[9] == '1'
local out, taken, passed = {0}, 0, 0
for _, id in ipairs(ids) do
  local running = ARGV[3] .. id
  if redis.call('EXISTS', running) == 0 then
    local deaths = tonumber(redis.call('HGET', KEYS[2], id)) or 0
    local suspect = deaths >= suspect_at
    if suspect and not (free_hands and taken == 0) then
      passed = 1
    else
      taken = taken + 1
      local token = ARGV[5] .. taken
      redis.call('SET', running, token, 'PX', ARGV[6])
      redis.call('HINCRBY', KEYS[2], id, 1)
      out[#out + 1], out[#out + 2], out[#out + 3] = id, token, deaths
      if suspect or taken >= tonumber(ARGV[2]) then break end
    end
  end
end
out[1] = passed
if taken > 0 then redis.call('EXPIRE', KEYS[2], ARGV[7]) end
return out
