--[[
  Redis's own clock, in ms (included, not run alone): every script that compares times
  with what other scripts wrote reads this one clock, never a caller's.
]]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
