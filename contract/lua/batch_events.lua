--[[
  Tells the webhooks that a batch ended (included by the scripts that end batches, so
  that the end and its event are written in one step).

  The event is OpenAI's object, ``{"id", "object": "event", "type": "batch.<ended>",
  "created_at", "data": {"id": <batch>}}``, kept as the exact body every delivery
  attempt sends. It waits in the outbox (a sorted set: event ID -> when it is due to be
  routed, in ms) until a worker routes it to its endpoints' queues (``worker/webhooks.py``).
  An event nobody routes goes with its key's TTL; the outbox drops members older than
  that, and holds at most OUTBOX_AT_MOST (the oldest go first: workers that deliver keep
  it near empty, so only an outbox nobody drains reaches it).
  An empty event ID means the batch's end is told to nobody: no endpoint is configured
  for its project, or it is a chat completion's (``contract.outbox.EndpointDirectory``).
]]
local OUTBOX_AT_MOST = 100000
local function announce_end(outbox, event_key, event_id, batch_id, ended, now_ms, keep_s)
  if event_id == '' then return end
  local created_at = math.floor(tonumber(now_ms) / 1000)
  local body = '{"id":' .. cjson.encode(event_id) .. ',"object":"event","type":"batch.'
    .. ended .. '","created_at":' .. created_at .. ',"data":{"id":' .. cjson.encode(batch_id)
    .. '}}'
  redis.call('HSET', event_key, 'body', body, 'batch', batch_id, 'type', 'batch.' .. ended,
    'created_ms', now_ms, 'attempts', 0)
  redis.call('EXPIRE', event_key, keep_s)
  redis.call('ZREMRANGEBYSCORE', outbox, '-inf', '(' .. (tonumber(now_ms) - keep_s * 1000))
  redis.call('ZADD', outbox, now_ms, event_id)
  redis.call('ZREMRANGEBYRANK', outbox, 0, -OUTBOX_AT_MOST - 1)
  redis.call('EXPIRE', outbox, keep_s)
end
