--[[
  Ends a worker's hold on a chunk, only if it still holds it (its token is the
  in-progress key's value): a worker that lost a chunk changes nothing of it.

  done:      every prompt of the chunk has its result; it leaves the queue. Checked here:
             if the batch is still there and a prompt of the chunk is unsettled, the
             chunk is handed back instead (a chunk never ends with a prompt unsettled).
  hand_back: it goes back to the queue where it stood, for any worker; a clean end.
  lapse:     the worker could not run it (its job function crashed, or ran out of
             time); it goes back to the queue and counts as a holder lapsed with it.
  discard:   arq could not read it (its job is gone or not a chunk): it leaves the
             queue; the stranded sweep queues again whatever prompts it carried.

  A chunk that goes back to the queue shows its unsettled prompts queued, in this step
  and only for its holder (a worker that lost the chunk changes no prompt's state: the
  new holder may have one on the wire).

  KEYS[1] queue, KEYS[2] held chunks, KEYS[3] their places, KEYS[4] its in-progress key,
  KEYS[5] its arq job key, KEYS[6] its arq retry key, KEYS[7] chunk lapses, KEYS[8] the
  work marker, KEYS[9] its batch's meta, KEYS[10] its batch's states, KEYS[11] its
  batch's counts
  ARGV[1] chunk ID, ARGV[2] token, ARGV[3] done, hand_back, lapse or discard, ARGV[4] how
  far to move it back in the queue (arq's Retry defer; scores are places in the
  round-robin, not times), ARGV[5] keys' ttl (s), ARGV[6..] its prompt indices

  Returns 1 if the worker held it and it ended as asked, 2 if ``done`` was refused (a
  prompt unsettled: it was handed back), 0 if the worker no longer held it.
]]
--- @include "prompt_states"
--- @include "queue"
if redis.call('GET', KEYS[4]) ~= ARGV[2] then return 0 end
local how, id = ARGV[3], ARGV[1]
if how == 'done' and redis.call('EXISTS', KEYS[9]) == 1 then
  for i = 6, #ARGV do
    if state_of(KEYS[10], ARGV[i]) < FINAL then how = 'hand_back'; break end
  end
end
redis.call('DEL', KEYS[4])
if how == 'done' or how == 'discard' then
  redis.call('DEL', KEYS[5], KEYS[6])
  forget_chunk(KEYS[1], KEYS[2], KEYS[3], KEYS[7], id)
  return 1
end
if how == 'hand_back' and redis.call('HINCRBY', KEYS[7], id, -1) <= 0 then
  redis.call('HDEL', KEYS[7], id)
end
if redis.call('EXISTS', KEYS[9]) == 1 then
  for i = 6, #ARGV do
    local code = state_of(KEYS[10], ARGV[i])
    if code == 1 or code == 2 then move(KEYS[10], KEYS[11], ARGV[i], 0) end
  end
end
unhold(KEYS[1], KEYS[2], KEYS[3], id, tonumber(ARGV[4]), tonumber(ARGV[5]))
work_added(KEYS[8], 1, tonumber(ARGV[5]))
if how ~= ARGV[3] then return 2 end
return 1
