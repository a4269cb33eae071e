--[[
  Claims for one worker the chunks at the head of its queue, each under a token of its
  own (the value of arq's in-progress key, which lives a claim TTL and is renewed by its
  holder's heartbeat); a claimed chunk moves from the queue to the held set. Counts the
  claim in the chunk's lapses (claims minus clean ends), so the count before this claim
  is how many earlier holders lapsed with it.

  First, held chunks whose claim lapsed (nobody renewed it) go back to the queue where
  they stood, unless the fleet's heartbeats were silent lately: a stalled Redis lapses
  every claim at once, and then each live holder is heard first (beat.lua: its lapse is
  no death), for one claim TTL after the heartbeats come back.

  A suspect (a chunk that many holders lapsed with) is run alone: it is taken only by a
  worker that holds nothing else, and then alone; a worker holding other chunks passes
  it by and is told one is waiting, so that it empties its hands for it.

  KEYS[1] queue, KEYS[2] held chunks, KEYS[3] their places, KEYS[4] chunk lapses,
  KEYS[5] the fleet's last beat, KEYS[6] the end of the fleet's last silence, KEYS[7]
  the work marker
  ARGV[1] how many, ARGV[2] arq's in-progress key prefix, ARGV[3] token prefix,
  ARGV[4] claim ttl (ms), ARGV[5] keys' ttl (s), ARGV[6] lapses that make a suspect,
  ARGV[7] 1 if this worker holds nothing (it may take a suspect), ARGV[8..] chunks not to
  take (this worker lost them and still winds them down)

  Returns {1 if a suspect was passed by, ms until a held claim may lapse or the silence's
  wait ends (-1: nothing held), then per claimed chunk: its ID, its token, its lapses}.
  (A score of 0 or less is not a chunk: arq would never start it, so it is skipped.)
]]
--- @include "queue"
local REAP_PER_CALL, SCAN_EXTRA = 100, 64
local now = now_ms()
local want, prefix, ttl = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[4])
local keep, suspect_at, free_hands = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7] == '1'
local skip = {}
for i = 8, #ARGV do skip[ARGV[i]] = true end
local last_beat = tonumber(redis.call('GET', KEYS[5])) or 0
local quiet_end = tonumber(redis.call('GET', KEYS[6])) or 0
local heard_until = quiet_end + ttl
if now - last_beat <= ttl / 2 and now >= heard_until then
  local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, REAP_PER_CALL)
  for _, id in ipairs(lapsed) do
    local left = redis.call('PTTL', prefix .. id)
    if left == -2 then
      unhold(KEYS[1], KEYS[2], KEYS[3], id, 0, keep)
    elseif left > 0 then
      redis.call('ZADD', KEYS[2], now + left, id)  -- renewed: its score lagged behind
    end
  end
end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(0', '+inf', 'WITHSCORES', 'LIMIT', 0,
                       want + SCAN_EXTRA + #ARGV - 7)
local out, taken, passed = {0, -1}, 0, 0
local function take(id, place, lapses)
  taken = taken + 1
  local token = ARGV[3] .. taken
  redis.call('SET', prefix .. id, token, 'PX', ttl)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], now + ttl, id)
  redis.call('HSET', KEYS[3], id, place)
  redis.call('HINCRBY', KEYS[4], id, 1)
  out[#out + 1], out[#out + 2], out[#out + 3] = id, token, lapses
end
for i = 1, #ids, 2 do
  local id, place = ids[i], ids[i + 1]
  if not skip[id] then  -- a chunk this worker winds down is left for another
    local lapses = tonumber(redis.call('HGET', KEYS[4], id)) or 0
    if lapses >= suspect_at and not (free_hands and taken == 0) then
      passed = 1
    elseif redis.call('EXISTS', prefix .. id) == 0 then
      take(id, place, lapses)
      if lapses >= suspect_at or taken >= want then break end
    end
  end
end
out[1] = passed
if taken > 0 then
  for i = 2, 4 do redis.call('EXPIRE', KEYS[i], keep) end
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')[2]
if first then out[2] = math.max(tonumber(first) - now, 0, heard_until - now) end
return out
