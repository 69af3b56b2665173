-- Take expired ads out of the indexes in one step, so an ad renewed meanwhile is kept.
-- KEYS: ads_expiry, ads_geo, ads_summary   ARGV: now   Returns the ids taken out.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
end
return ids
