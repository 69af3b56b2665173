-- Credit the strategy (and cell) of each feed an apply came from, once per feed: a feed
-- earns its weight if it led to any apply. The items are ARGV[s..e], 5 values each: the
-- KEYS index of the feed's credited-feed set (one per day served), feed_id, the fields it
-- counts in besides '*' (its cell, then its region's field when regions are kept; space-
-- separated), strategy (1-based), weight. Needs decay.lib.
local function credit_feeds(strategies_key, s, e, nstrat, now, half_life, credited_ttl)
  local credit, credited_keys = {}, {}
  local function add(cell, column, weight)
    local t = credit[cell]
    if not t then t = {}; credit[cell] = t end
    t[column] = (t[column] or 0) + weight
  end
  for i = s, e, 5 do
    local key = KEYS[tonumber(ARGV[i])]
    if redis.call('SADD', key, ARGV[i + 1]) == 1 then
      credited_keys[key] = true
      local column, weight = nstrat + tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
      for field in string.gmatch(ARGV[i + 2], '%S+') do add(field, column, weight) end
      add('*', column, weight)
    end
  end
  for cell, adds in pairs(credit) do
    decayed_add(strategies_key, cell, 2 * nstrat, adds, now, half_life)
  end
  for key in pairs(credited_keys) do redis.call('EXPIRE', key, credited_ttl) end
end
