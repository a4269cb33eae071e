--[[
  Gives leases back with what their requests said about their identities: success
  halves the penalty, a failure raises it and cools the identity once it reaches 1
  (for max(the floor asked for, exponential backoff with jitter), capped), a failed
  probe asks for another. A lease already reaped (its holder looked dead) frees no
  second slot.

  Failures of one identity that share a cause are one incident, and count once: a site
  that restarts under 100 requests in flight fails all 100 at once, and that is one
  failure, not 100. A failure belongs to the incident of its error when its lease was
  granted before that incident began (its request was already out when the first
  failure came back; lease tokens number the grants of their identity); a request sent
  after that is new evidence (a bad exit fails each request it is given, one after the
  other, and cools as before). Each error has its incident: a restart that fails some
  requests with resets and some with timeouts is two. Each failure is still counted in
  ``failed``.

  In a fleet of several sites, what each lease says about its site is kept too
  (site_health.lua): an answer brings the site up, failures through every identity
  take it down.

  KEYS: see policy.lua, then its extra keys: 1 the site health hash, 2 the site's failures
  ARGV[1] burst, ARGV[2] backoff base (ms), ARGV[3] backoff cap (ms), ARGV[4] policy
  keys' ttl (s), ARGV[5] the site ('' in a fleet of one), then per lease: token, verdict
  (ok, none, suspect, cool, quarantine, down), floor (ms), jitter (0..1), latency (ms),
  reason, was a probe (0/1)

  Returns how many of the leases were still held.
]]
--- @include "policy"
--- @include "site_health"
local burst, base, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local held = 0
local HEALTH, FAILURES, SITE = extra_key(1), extra_key(2), ARGV[5]
-- Whether this failure belongs to the identity's last incident of this cause (its lease
-- granted before that incident began); if not, it opens a new one, which every lease
-- granted so far belongs to. Each cause has its own (a restart fails some requests with
-- resets and some with timeouts): kept as ``cause=grant;cause=grant`` in one field.
local function same_incident(name, cause, token)
  local kept = redis.call('HGET', INCIDENT, name) or ''
  local incidents = {}
  for kind, grant in string.gmatch(kept, '([^=;]+)=(%d+)') do incidents[kind] = tonumber(grant) end
  if incidents[cause] and grant_number(token) <= incidents[cause] then return true end
  incidents[cause] = num(GRANTED, name)
  local parts = {}
  for kind, grant in pairs(incidents) do parts[#parts + 1] = kind .. '=' .. grant end
  redis.call('HSET', INCIDENT, name, table.concat(parts, ';'))
  return false
end
for i = 6, #ARGV, 7 do
  local token, verdict = ARGV[i], ARGV[i + 1]
  local name = identity_of(token)
  if name then
    if redis.call('ZREM', LEASES, token) == 1 then
      free_slot(name)
      held = held + 1
    end
    local penalty = num(PENALTY, name)
    if verdict == 'ok' then
      penalty = penalty * 0.5
      if penalty < 0.05 then penalty = 0 end
      local sample = tonumber(ARGV[i + 4])
      local latency = tonumber(redis.call('HGET', LATENCY, name)) or sample
      redis.call('HSET', PENALTY, name, penalty)
      redis.call('HSET', LATENCY, name, math.floor(latency * 0.8 + sample * 0.2))
      redis.call('HSET', PROBE, name, 0)
      redis.call('HINCRBY', OK, name, 1)
      site_answered(HEALTH, FAILURES, SITE, ARGV[4])
    elseif verdict == 'none' then
      if ARGV[i + 6] == '1' then redis.call('HSET', PROBE, name, 1) end
    elseif same_incident(name, ARGV[i + 5], token) then
      -- Counted with the failure that opened the incident; what the site asked still holds.
      redis.call('HINCRBY', FAILED, name, 1)
      local floor = tonumber(ARGV[i + 2])
      if floor > 0 then
        redis.call('HSET', COOLDOWN, name, math.max(num(COOLDOWN, name), now + floor))
      end
      if ARGV[i + 6] == '1' then redis.call('HSET', PROBE, name, 1) end
    else
      -- A suspect (an ambiguous failure) weighs half; the successes between failures halve
      -- the penalty, so only an identity that keeps failing reaches a cooldown.
      penalty = penalty + (verdict == 'suspect' and 0.5 or 1)
      redis.call('HSET', PENALTY, name, penalty)
      redis.call('HINCRBY', FAILED, name, 1)
      local pool_size = redis.call('ZCARD', READY) + redis.call('ZCARD', LATER)
      site_failed(HEALTH, FAILURES, SITE, name, ARGV[i + 5], pool_size, ARGV[4])
      if penalty >= 1 then
        local backoff = tonumber(ARGV[i + 3]) * math.min(cap, base * 2 ^ penalty)
        local until_ms = now + math.max(tonumber(ARGV[i + 2]), backoff)
        redis.call('HSET', COOLDOWN, name, math.max(num(COOLDOWN, name), until_ms))
        redis.call('HSET', REASON, name, ARGV[i + 5])
        redis.call('HSET', PROBE, name, 1)
      elseif ARGV[i + 6] == '1' then
        redis.call('HSET', PROBE, name, 1)  -- the probe failed mildly: another probe next
      end
    end
    reindex(name, burst)
  end
end
room_freed(held)
keep_policy_keys(ARGV[4])
return held
