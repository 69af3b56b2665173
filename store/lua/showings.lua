-- The frequency cap's counts of what users were shown and ignored. Per user, `shown` keeps
-- each ad's impressions in its window: member the ad, score the window's start (whole
-- seconds) plus count / 16; `capped` keeps the ads that reached the cap: member the ad,
-- score when it reached the cap (held for window_s from then: impressions below the first
-- screen do not extend it). A window over (older than window_s) counts again from nothing;
-- a view, save or apply from the user (engaged) clears the ad from both. Each key keeps its newest
-- max_ads members and is forgotten window_s after its last write.
-- KEYS: per user: its shown set, its capped set
-- ARGV: now, window_s, cap, max_ads, then per user: the number of ads it was shown, the
--       number it engaged with, (ad, impressions) pairs of the first, the ads of the second
-- Returns the number of ads capped by this call.
local now, window_s = tonumber(ARGV[1]), tonumber(ARGV[2])
local cap, max_ads = tonumber(ARGV[3]), tonumber(ARGV[4])
local start, since, capped = math.floor(now), now - window_s, 0
local i = 5
for k = 1, #KEYS, 2 do
  local shown, held = KEYS[k], KEYS[k + 1]
  local n, m = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  i = i + 2
  redis.call('ZREMRANGEBYSCORE', shown, '-inf', '(' .. since)
  for j = i, i + 2 * n - 1, 2 do
    local ad, times = ARGV[j], tonumber(ARGV[j + 1])
    local score = tonumber(redis.call('ZSCORE', shown, ad))
    local from, count = start, 0
    if score then
      from = math.floor(score)
      count = math.floor((score - from) * 16 + 0.5)
    end
    local before = count
    count = math.min(count + times, 15)
    redis.call('ZADD', shown, from + count / 16, ad)
    if count >= cap and before < cap then     -- held from when it reached the cap
      redis.call('ZADD', held, now, ad)
      capped = capped + 1
    end
  end
  i = i + 2 * n
  for j = i, i + m - 1 do
    redis.call('ZREM', shown, ARGV[j])
    redis.call('ZREM', held, ARGV[j])
  end
  i = i + m
  redis.call('ZREMRANGEBYRANK', shown, 0, -max_ads - 1)
  redis.call('ZREMRANGEBYSCORE', held, '-inf', '(' .. since)
  redis.call('ZREMRANGEBYRANK', held, 0, -max_ads - 1)
  redis.call('EXPIRE', shown, window_s)
  redis.call('EXPIRE', held, window_s)
end
return capped
