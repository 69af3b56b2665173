-- Add ads to a user's exclusions: ad -> when, the newest `max_ads` kept, the whole set
-- forgotten `ttl_s` after its last addition. `ads` is a flat list of (when, ad) pairs.
local function exclude(key, ads, max_ads, ttl_s)
  for i = 1, #ads, 2000 do   -- unpack has a bound
    redis.call('ZADD', key, unpack(ads, i, math.min(i + 1999, #ads)))
  end
  redis.call('ZREMRANGEBYRANK', key, 0, -tonumber(max_ads) - 1)
  redis.call('EXPIRE', key, ttl_s)
end
