"""Every Lua script the service runs. Each one is one atomic step of the flow."""

# Add ads to a user's exclusions: ad -> when, the newest `max_ads` kept, the whole set
# forgotten `ttl_s` after its last addition. `ads` is a flat list of (when, ad) pairs.
EXCLUDE_LIB = """
local function exclude(key, ads, max_ads, ttl_s)
  for i = 1, #ads, 2000 do   -- unpack has a bound
    redis.call('ZADD', key, unpack(ads, i, math.min(i + 1999, #ads)))
  end
  redis.call('ZREMRANGEBYRANK', key, 0, -tonumber(max_ads) - 1)
  redis.call('EXPIRE', key, ttl_s)
end
"""

# Exclusions for several users. KEYS: their exclusion sets
# ARGV: max_ads, ttl_s, now, then per key: the number of its ads, the ads.
EXCLUDE = EXCLUDE_LIB + """
local i = 4
for k = 1, #KEYS do
  local ads = {}
  for j = 1, tonumber(ARGV[i]) do
    ads[#ads + 1] = ARGV[3]; ads[#ads + 1] = ARGV[i + j]
  end
  exclude(KEYS[k], ads, ARGV[1], ARGV[2])
  i = i + tonumber(ARGV[i]) + 1
end
return #KEYS
"""

# Accept a validated batch. An event whose event_id was accepted before (this window or
# the last, or earlier in the batch) is a duplicate; else one whose ad has no catalogue
# record (never created, or deleted) is rejected, and neither kept nor marked as seen, so it
# can be sent again once the ad exists; the rest are marked as seen and kept in the inbox
# until the ingest task moves them. An apply or hide of a known ad, accepted or a duplicate,
# adds the ad to its user's exclusions.
# The catalogue records (ad_key_prefix .. ad_id, as NEARBY reads them) and the exclusion sets
# lie outside the {ev} slot: on Redis Cluster this step needs a known-ads set tagged {ev}
# instead (a change of the store alone).
# KEYS: inbox, inbox_due, seen_now, seen_prev, then the exclusion sets of the batch's users
# ARGV: batch_id, now, seen_ttl_s, exclusions_max, exclusions_ttl_s, ad_key_prefix, n, then
#       n events of 3 values (event_id, ad_id, json), then for each event that excludes its
#       ad for a user, (its number 1..n, the KEYS index of that user's exclusion set)
# Returns one flag per event: 1 accepted, 0 duplicate, -1 unknown ad.
ACCEPT = EXCLUDE_LIB + """
local now, prefix, n = ARGV[2], ARGV[6], tonumber(ARGV[7])
local flags, kept, batch_seen, known, excluded = {}, {}, {}, {}, {}
for e = 1, n do
  local i = 5 + 3 * e
  local id, ad = ARGV[i], ARGV[i + 1]
  if known[ad] == nil then known[ad] = redis.call('EXISTS', prefix .. ad) == 1 end
  if batch_seen[id]
      or redis.call('SISMEMBER', KEYS[3], id) == 1
      or redis.call('SISMEMBER', KEYS[4], id) == 1 then
    flags[e] = 0
  elseif not known[ad] then
    flags[e] = -1
  else
    batch_seen[id] = true
    kept[#kept + 1] = ARGV[i + 2]
    redis.call('SADD', KEYS[3], id)
    flags[e] = 1
  end
end
for j = 8 + 3 * n, #ARGV, 2 do
  local ad, x = ARGV[6 + 3 * tonumber(ARGV[j])], tonumber(ARGV[j + 1])
  if known[ad] then
    local ads = excluded[x]
    if not ads then ads = {}; excluded[x] = ads end
    ads[#ads + 1] = now; ads[#ads + 1] = ad
  end
end
if #kept > 0 then
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  redis.call('HSET', KEYS[1], ARGV[1], table.concat(kept, '\\n'))
  redis.call('ZADD', KEYS[2], now, ARGV[1])
end
for x, ads in pairs(excluded) do exclude(KEYS[x], ads, ARGV[4], ARGV[5]) end
return flags
"""

# Move one accepted batch from the inbox to the events stream. Idempotent: a batch
# already moved is gone from the inbox, so a redelivered task adds nothing.
# KEYS: inbox, inbox_due, events   ARGV: batch_id
ROLL_IN = """
local payload = redis.call('HGET', KEYS[1], ARGV[1])
if not payload then return 0 end
local n = 0
for line in string.gmatch(payload, '[^\\n]+') do
  redis.call('XADD', KEYS[3], '*', 'e', line)
  n = n + 1
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
"""

# Lazily decayed sums. A hash field holds "t v1 v2 ... vn": the sums as they stood at time t.
# Adding brings both the stored sums and the additions to the later of t and now, each
# multiplied by 2^(-age / half_life), so no periodic pass over every field is needed.
# (bandit.decay.decay_to applies the same formula when the sums are read.)
DECAY_LIB = """
local function decayed_add(key, field, width, adds, now, half_life, fmt)
  fmt = fmt or '%.17g'
  local sums = {}
  local t = now
  local cur = redis.call('HGET', key, field)
  if cur then
    local i = -1
    for x in string.gmatch(cur, '%S+') do
      if i < 0 then t = tonumber(x) else sums[i + 1] = tonumber(x) end
      i = i + 1
    end
  end
  local at = math.max(t, now)
  local keep = 2 ^ (-(at - t) / half_life)
  local fresh = 2 ^ (-(at - now) / half_life)
  local out = {string.format('%.17g', at)}
  for i = 1, width do
    out[i + 1] = string.format(fmt, (sums[i] or 0) * keep + (adds[i] or 0) * fresh)
  end
  redis.call('HSET', key, field, table.concat(out, ' '))
end
"""

# Count a block of events and XACK them in one step. An entry counts only if this
# XACK acknowledged it, so an entry reclaimed and counted elsewhere is never counted twice.
# The same step adds to each ad's decayed evidence and to its impressions and views by
# position in the epoch its feed was served in (for the examination curve), and credits the
# strategy (and cell) of the feed an apply came from, once per feed: a feed earns 1 if it
# led to any apply.
# KEYS: events, 5 stats hashes (impressions views saves applies hides), decayed, strategies,
#       the all-time ctr hash, the position epochs' set, then ctr day keys, credited-feed day
#       keys and position epoch keys (each entry says which)
# ARGV: group, now, half_life, credited_ttl_s, position_width, epoch_ttl_s, n strategy
#       names, the names, then per entry 11 values: entry_id, ad_id, type_index 0..5,
#       ctr_key_index, weight, cell, strategy_index (0: no feed), feed_id,
#       credited_key_index, position_column (0: none), epoch_key_index.
#       type_index 0 acknowledges an unusable entry without counting it.
ROLLUP = DECAY_LIB + """
local names = {'impressions', 'views', 'saves', 'applies', 'hides'}
local group, now, half_life = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local credited_ttl, position_width = ARGV[4], tonumber(ARGV[5])
local epoch_ttl, nstrat = ARGV[6], tonumber(ARGV[7])
local strategy = {}
for i = 1, nstrat do strategy[i] = ARGV[7 + i] end
local counts, evidence, credit, credited_keys, positions = {}, {}, {}, {}, {}
local function add(tbl, key, field, n)
  local t = tbl[key]
  if not t then t = {}; tbl[key] = t end
  t[field] = (t[field] or 0) + n
end
local counted = 0
for i = 8 + nstrat, #ARGV, 11 do
  if redis.call('XACK', KEYS[1], group, ARGV[i]) == 1 then
    local t = tonumber(ARGV[i + 2])
    if t > 0 then
      local ad, day_key, weight = ARGV[i + 1], KEYS[tonumber(ARGV[i + 3])], tonumber(ARGV[i + 4])
      local cell, s = ARGV[i + 5], tonumber(ARGV[i + 6])
      add(counts, KEYS[1 + t], ad, 1)
      add(counts, day_key, names[t], 1)
      add(counts, KEYS[9], names[t], 1)
      if t <= 4 then add(evidence, ad, t, weight) end
      local column = tonumber(ARGV[i + 9])
      if column > 0 then
        local epoch_key = KEYS[tonumber(ARGV[i + 10])]
        local by_ad = positions[epoch_key]
        if not by_ad then by_ad = {}; positions[epoch_key] = by_ad end
        add(by_ad, ad, column, 1)
      end
      if s > 0 then
        add(counts, day_key, strategy[s] .. ':' .. names[t], 1)
        add(counts, KEYS[9], strategy[s] .. ':' .. names[t], 1)
        local credited_key = KEYS[tonumber(ARGV[i + 8])]
        if t == 4 and redis.call('SADD', credited_key, ARGV[i + 7]) == 1 then
          credited_keys[credited_key] = true
          add(credit, cell, nstrat + s, weight)
          add(credit, '*', nstrat + s, weight)
        end
      end
      counted = counted + 1
    end
  end
end
for key, fields in pairs(counts) do
  for field, n in pairs(fields) do redis.call('HINCRBY', key, field, n) end
end
for ad, adds in pairs(evidence) do decayed_add(KEYS[7], ad, 4, adds, now, half_life) end
for epoch_key, by_ad in pairs(positions) do
  for ad, adds in pairs(by_ad) do
    decayed_add(epoch_key, ad, position_width, adds, now, math.huge, '%.10g')
  end
  redis.call('EXPIRE', epoch_key, epoch_ttl)
  redis.call('ZADD', KEYS[10], now, epoch_key)
end
for cell, adds in pairs(credit) do decayed_add(KEYS[8], cell, 2 * nstrat, adds, now, half_life) end
for key in pairs(credited_keys) do redis.call('EXPIRE', key, credited_ttl) end
return counted
"""

# Count served feeds per cell and strategy, once: the step applies only if the cursor (the
# last served entry counted) is still where the caller read from, and moves it on.
# KEYS: served_cursor, strategies
# ARGV: expected_cursor, new_cursor, now, half_life, n strategies,
#       then (cell, strategy_index, weight) triples
COUNT_SERVED = DECAY_LIB + """
if (redis.call('GET', KEYS[1]) or '0-0') ~= ARGV[1] then return -1 end
local now, half_life, nstrat = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local served = {}
local n = 0
for i = 6, #ARGV, 3 do
  local s, weight = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  for _, cell in ipairs({ARGV[i], '*'}) do
    local t = served[cell]
    if not t then t = {}; served[cell] = t end
    t[s] = (t[s] or 0) + weight
  end
  n = n + 1
end
for cell, adds in pairs(served) do decayed_add(KEYS[2], cell, 2 * nstrat, adds, now, half_life) end
redis.call('SET', KEYS[1], ARGV[2])
return n
"""

# Set an epoch's position counts aside for folding: events still arriving for the epoch
# start a fresh key, so nothing counted after the fold read them is lost with it.
# KEYS: epoch key, its folding key
# Returns 2 if a fold of the epoch was left unfinished (finish that first), 1 if set aside,
# 0 if there is nothing to fold.
BEGIN_FOLD = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
return 1
"""

# Fold an epoch's set-aside position counts into the decayed pair counts, once: the step
# applies only if the folding key is still there, and deletes it; the epoch leaves the set
# of epochs to fold unless new counts came in meanwhile.
# KEYS: folding key, pairs hash, the position epochs' set, epoch key
# ARGV: now, half_life, width, then the epoch's pair counts (width numbers)
# Returns 1 if folded, 0 if another run had folded it.
FOLD_POSITIONS = DECAY_LIB + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local adds = {}
for i = 4, #ARGV do adds[i - 3] = tonumber(ARGV[i]) end
decayed_add(KEYS[2], 'pairs', tonumber(ARGV[3]), adds, tonumber(ARGV[1]), tonumber(ARGV[2]))
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[4]) == 0 then redis.call('ZREM', KEYS[3], KEYS[4]) end
return 1
"""

# Store cell feeds only if no ad was removed or moved since the snapshot they were built from.
# KEYS: catalog_epoch, feed keys...   ARGV: expected_epoch, ttl_s, packed values...
WRITE_FEEDS = """
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return -1 end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ARGV[2])
end
return #KEYS - 1
"""

# Live ads near a point, nearest first, with their exact coordinates from the catalogue.
# KEYS: ads_geo, ads_expiry   ARGV: lon, lat, search_radius_km, count, now, ad_key_prefix
# Returns flat (ad_id, lat, lon) triples; expired ads are skipped, and the search widens
# its COUNT until `count` live ads are found or the radius holds no more.
NEARBY = """
local want = tonumber(ARGV[4])
local count = want
while true do
  local found = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[1], ARGV[2],
                           'BYRADIUS', ARGV[3], 'km', 'ASC', 'COUNT', count)
  local out = {}
  local live = 0
  for _, id in ipairs(found) do
    local exp = tonumber(redis.call('ZSCORE', KEYS[2], id) or 'inf')
    if exp > tonumber(ARGV[5]) then
      local ll = redis.call('HMGET', ARGV[6] .. id, 'lat', 'lon')
      if ll[1] then
        out[#out + 1] = id; out[#out + 1] = ll[1]; out[#out + 1] = ll[2]
        live = live + 1
        if live >= want then return out end
      end
    end
  end
  if #found < count then return out end
  count = count * 2
end
"""

# Append many served feeds to the served stream in one call, once: a flush retried after
# its reply was lost (the write had happened) appends nothing the second time.
# KEYS: served, flush marker ({served}:flush:<id>)
# ARGV: maxlen, marker_ttl_s, field count n, n field names, then n values per entry
# Returns the entries appended (0 for a repeat).
APPEND_SERVED = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then return 0 end
local n = tonumber(ARGV[3])
local entry = {}
for i = 4 + n, #ARGV, n do
  for j = 1, n do
    entry[2 * j - 1] = ARGV[3 + j]
    entry[2 * j] = ARGV[i + j - 1]
  end
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(entry))
end
return (#ARGV - 3 - n) / n
"""

# Take expired ads out of the indexes in one step, so an ad renewed meanwhile is kept.
# KEYS: ads_expiry, ads_geo, ads_summary   ARGV: now   Returns the ids taken out.
DROP_EXPIRED = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
end
return ids
"""
