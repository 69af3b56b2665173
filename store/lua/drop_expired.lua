-- Take expired ads out of the indexes in one step, so an ad renewed meanwhile is kept.
-- KEYS: ads_expiry, ads_geo, ads_summary, ads_cards
-- ARGV: now, the current summary layout's tag, where its serial begins (1-based; 8 bytes,
-- little-endian)   Returns the ids taken out.
local tag, at = ARGV[2], tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, id in ipairs(ids) do
  local value = redis.call('HGET', KEYS[3], id)
  if value and string.sub(value, 1, #tag) == tag then
    local serial = 0
    for i = 7, 0, -1 do serial = serial * 256 + string.byte(value, at + i) end
    redis.call('HDEL', KEYS[4], string.format('%.0f', serial))
  end
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
end
return ids
