--[[
  One heartbeat of a worker, in one call: its leases and its chunk claims renewed (each
  renewal saying what was lost, see renewals.lua), its line in the registry of workers
  that ``workers`` and ``top`` read, and the fleet's beat clock. Nothing else.

  The fleet's beat clock says when any heartbeat was last processed. A beat that finds
  it older than half a claim TTL ends a silence (Redis stalled, or every worker was
  paused): it notes the silence's end, and for one claim TTL from then no claim script
  takes a lapsed chunk back (claim_chunks.lua), so that every live holder beats first.

  KEYS: see policy.lua, then its extra keys: 1 the registry of workers, 2 this worker's
  report, 3 the queue's held chunks, 4 chunk lapses, 5 the fleet's last beat, 6 the end
  of the fleet's last silence
  ARGV[1] lease ttl (ms), ARGV[2] policy keys' ttl (ms), ARGV[3] chunk claim ttl (ms),
  ARGV[4] arq's in-progress key prefix, ARGV[5] how long a report lives (ms), ARGV[6]
  this worker's ID, ARGV[7] how many lease tokens are probes', ARGV[8] how many lease
  tokens, ARGV[9] how many chunk claims, ARGV[10] how many report fields; then the
  lease tokens (the probes' first), the (chunk ID, token) pairs, the (field, value)
  pairs of the report

  Returns {the chunk IDs lost, the lease tokens lost}.
]]
--- @include "policy"
--- @include "renewals"
local WORKERS, REPORT, HELD = extra_key(1), extra_key(2), extra_key(3)
local LAPSES, BEAT, QUIET = extra_key(4), extra_key(5), extra_key(6)
redis.call('PEXPIRE', LEASES, ARGV[2])  -- the first write grows no memory: see renewals.lua
local claim_ttl = tonumber(ARGV[3])
local last_beat = tonumber(redis.call('GET', BEAT)) or 0
if now - last_beat > claim_ttl / 2 then redis.call('SET', QUIET, now, 'PX', ARGV[2]) end
redis.call('SET', BEAT, now, 'PX', ARGV[2])
local leases, chunks, fields = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local first_lease, first_chunk = 11, 11 + leases
local first_field = first_chunk + 2 * chunks
local lost_leases = renew_lease_tokens(tonumber(ARGV[1]), first_lease, tonumber(ARGV[7]), leases)
local lost_chunks = renew_chunk_claims(HELD, LAPSES, claim_ttl, ARGV[4], first_chunk, chunks)
local report_ttl = tonumber(ARGV[5])
if fields > 0 then
  redis.call('HSET', REPORT, unpack(ARGV, first_field, first_field + 2 * fields - 1))
end
redis.call('PEXPIRE', REPORT, report_ttl)
redis.call('ZADD', WORKERS, now, ARGV[6])
redis.call('ZREMRANGEBYSCORE', WORKERS, '-inf', now - report_ttl)
redis.call('PEXPIRE', WORKERS, report_ttl)  -- the last worker gone, the registry goes too
return {lost_chunks, lost_leases}
