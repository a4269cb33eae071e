--[[
  Stores each prompt's one result and counts it (an answer also in its site's count,
  ``site:<name>``); a prompt that already has its result keeps it (the first result
  wins). Ends the batch when its last prompt settles, and
  in the same step writes the event that tells the webhooks so (``batch_events``).
  Writes nothing for a batch that is gone (its record expired, or Redis was emptied).

  KEYS[1] meta, KEYS[2] states, KEYS[3] counts, KEYS[4] results, KEYS[5] attempts,
  KEYS[6] the webhook outbox, KEYS[7] the event's key (used if this call ends the batch),
  KEYS[8..] every key of the batch (their TTL is renewed when the batch ends)
  ARGV[1] ttl (s), ARGV[2] now (ISO), ARGV[3] the state codes a prompt may settle from
  (comma-separated: 0,1,2 for any unsettled one; 0 to settle only queued ones),
  ARGV[4] batch ID, ARGV[5] the event's ID (empty: told to nobody), ARGV[6] now (ms),
  ARGV[7] how long an event is kept (s), then (index, state code, the site that answered
  or '', result JSON) quadruples

  Returns {how many were stored, the batch's state after, 1 if this call ended it}.
]]
--- @include "prompt_states"
--- @include "batch_events"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, false, 0} end
local from = {}
for code in string.gmatch(ARGV[3], '%d+') do from[tonumber(code)] = true end
local saved = 0
for i = 8, #ARGV, 4 do
  local idx, code, site = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  if from[state_of(KEYS[2], idx)] then
    redis.call('HSET', KEYS[4], idx, ARGV[i + 3])
    redis.call('HDEL', KEYS[5], idx)
    move(KEYS[2], KEYS[3], idx, code)
    if site ~= '' and code == 3 then redis.call('HINCRBY', KEYS[3], 'site:' .. site, 1) end
    saved = saved + 1
  end
end
keep(KEYS[2], ARGV[1])
keep(KEYS[4], ARGV[1])
local batch_keys = {}
for i = 8, #KEYS do batch_keys[#batch_keys + 1] = KEYS[i] end
local state, ended_now = finish_if_done(KEYS[1], KEYS[3], ARGV[2], ARGV[1], batch_keys)
if ended_now then
  announce_end(KEYS[6], KEYS[7], ARGV[5], ARGV[4], state, ARGV[6], tonumber(ARGV[7]))
  return {saved, state, 1}
end
return {saved, state, 0}
