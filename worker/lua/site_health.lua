--[[
  A site's health, for the lease scripts of a fleet of several sites (included, not run
  alone; after policy.lua). The site's fields live in the fleet's site health hash
  (``<site>:<field>``), its recent failures in a sorted set of its own (identity -> ms).

  A site is down when, since its last answer, it failed through every identity of the
  caller's pool (each within the last SITE_WINDOW_MS), at least twice: 5xx, resets,
  timeouts, challenge pages, a page with no chat, proxies failing (an answer clears
  what it failed so far). It rests
  (5 s, doubling each time in a row, up to 5 min), then comes back one request at a time
  (a probe), as an identity does: a probe that fails puts it down again, its first
  answer brings it back whole.
]]
local SITE_WINDOW_MS, SITE_REST_MS, SITE_REST_CAP_MS = 30000, 5000, 300000
local SITE_FAILURES = {UpstreamHiccup = true, UpstreamTimeout = true, Blocked = true,
                       HandshakeFailed = true, ProxyFault = true}
local function site_field(health, site, name) return redis.call('HGET', health, site .. ':' .. name) end
-- (how many leases the site may grant now or nil for any, why not, until when (ms)).
local function site_room(health, site, ttl)
  if site == '' then return nil, 'ready', 0 end
  local down_until = tonumber(site_field(health, site, 'down_until')) or 0
  if down_until > now then return 0, 'site_down', down_until end
  if site_field(health, site, 'probe') == '1' then
    local out = tonumber(site_field(health, site, 'probe_out')) or 0
    if out > now then return 0, 'site_probing', out end
    return 1, 'site_probing', now + ttl
  end
  return nil, 'ready', 0
end
-- A probe lease of a coming-back site was granted: no other until it returns or expires.
local function site_probe_sent(health, site, until_ms, keep)
  redis.call('HSET', health, site .. ':probe_out', until_ms)
  redis.call('EXPIRE', health, keep)
end
-- The site answered: it is up, whole.
local function site_answered(health, failures, site, keep)
  if site == '' then return end
  if site_field(health, site, 'probe') or site_field(health, site, 'strikes') then
    for _, name in ipairs({'down_until', 'reason', 'probe', 'probe_out', 'downs', 'strikes'}) do
      redis.call('HDEL', health, site .. ':' .. name)
    end
  end
  redis.call('DEL', failures)
  redis.call('HSET', health, site .. ':ok', now)
  redis.call('EXPIRE', health, keep)
end
-- An identity of the site failed (a new incident); the site goes down if every identity
-- of ``pool_size`` tried lately failed, at least twice, and nothing was answered since.
local function site_failed(health, failures, site, identity, cause, pool_size, keep)
  if site == '' or not SITE_FAILURES[cause] then return end
  redis.call('ZADD', failures, now, identity)
  redis.call('ZREMRANGEBYSCORE', failures, '-inf', now - SITE_WINDOW_MS)
  redis.call('PEXPIRE', failures, SITE_WINDOW_MS * 2)
  local strikes = redis.call('HINCRBY', health, site .. ':strikes', 1)
  redis.call('EXPIRE', health, keep)
  if (tonumber(site_field(health, site, 'down_until')) or 0) > now then return end
  if site_field(health, site, 'probe') ~= '1' then  -- a failed probe: down again at once
    if strikes < 2 or redis.call('ZCARD', failures) < math.max(pool_size, 1) then return end
  end
  local downs = redis.call('HINCRBY', health, site .. ':downs', 1)
  local rest = math.min(SITE_REST_CAP_MS, SITE_REST_MS * 2 ^ (downs - 1))
  redis.call('HSET', health, site .. ':down_until', now + rest, site .. ':reason', cause,
             site .. ':probe', 1, site .. ':strikes', 0)
  redis.call('HDEL', health, site .. ':probe_out')
  redis.call('DEL', failures)
end
