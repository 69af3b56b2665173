-- uses: decay.lib
-- Count a block of events and XACK them in one step. An entry counts only if this
-- XACK acknowledged it, so an entry reclaimed and counted elsewhere is never counted twice.
-- The same step adds to each ad's counters and decayed evidence, to its impressions and views by
-- position in the epoch its feed was served in (for the examination curve), and credits the
-- strategy (and cell) of the feed an apply came from, once per feed: a feed earns 1 if it
-- led to any apply.
-- KEYS: events, counts (ad -> "n1 n2 ...": one counter per type, in the order of ARGV's
--       type names), decayed, strategies, the all-time ctr hash, the position epochs' set,
--       then ctr day
--       keys, credited-feed day keys and position epoch keys (each entry says which)
-- ARGV: group, now, half_life, credited_ttl_s, position_width, epoch_ttl_s,
--       n_types, the types' counter names (store.STAT_FIELDS), evidence_types (the first
--       this many types add to an ad's decayed evidence), apply_type (the type whose first
--       event naming a feed credits that feed's strategy),
--       n strategy names, the names, then per entry 11 values: entry_id, ad_id,
--       type_index 0..n_types, ctr_key_index, weight, cell, strategy_index (0: no feed),
--       feed_id, credited_key_index, position_column (0: none), epoch_key_index.
--       type_index 0 acknowledges an unusable entry without counting it.
-- Returns the entries counted.
local group, now, half_life = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local credited_ttl, position_width, epoch_ttl = ARGV[4], tonumber(ARGV[5]), ARGV[6]
local ntypes = tonumber(ARGV[7])
local names = {}
for i = 1, ntypes do names[i] = ARGV[7 + i] end
local evidence_types = tonumber(ARGV[8 + ntypes])
local apply_type = tonumber(ARGV[9 + ntypes])
local nstrat = tonumber(ARGV[10 + ntypes])
local strategy = {}
for i = 1, nstrat do strategy[i] = ARGV[10 + ntypes + i] end
local counts_key, decayed_key, strategies_key = KEYS[2], KEYS[3], KEYS[4]
local ctr_all_key, epochs_key = KEYS[5], KEYS[6]
local counts, per_ad, evidence, credit, credited_keys, positions = {}, {}, {}, {}, {}, {}
local function add(tbl, key, field, n)
  local t = tbl[key]
  if not t then t = {}; tbl[key] = t end
  t[field] = (t[field] or 0) + n
end
local counted = 0
for i = 11 + ntypes + nstrat, #ARGV, 11 do
  if redis.call('XACK', KEYS[1], group, ARGV[i]) == 1 then
    local t = tonumber(ARGV[i + 2])
    if t > 0 then
      local ad, day_key, weight = ARGV[i + 1], KEYS[tonumber(ARGV[i + 3])], tonumber(ARGV[i + 4])
      local cell, s = ARGV[i + 5], tonumber(ARGV[i + 6])
      add(per_ad, ad, t, 1)
      add(counts, day_key, names[t], 1)
      add(counts, ctr_all_key, names[t], 1)
      if t <= evidence_types then add(evidence, ad, t, weight) end
      local column = tonumber(ARGV[i + 9])
      if column > 0 then
        local epoch_key = KEYS[tonumber(ARGV[i + 10])]
        local by_ad = positions[epoch_key]
        if not by_ad then by_ad = {}; positions[epoch_key] = by_ad end
        add(by_ad, ad, column, 1)
      end
      if s > 0 then
        add(counts, day_key, strategy[s] .. ':' .. names[t], 1)
        add(counts, ctr_all_key, strategy[s] .. ':' .. names[t], 1)
        local credited_key = KEYS[tonumber(ARGV[i + 8])]
        if t == apply_type and redis.call('SADD', credited_key, ARGV[i + 7]) == 1 then
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
for ad, adds in pairs(per_ad) do
  local now_counts = {}
  local cur = redis.call('HGET', counts_key, ad)
  if cur then
    local i = 1
    for x in string.gmatch(cur, '%S+') do now_counts[i] = tonumber(x); i = i + 1 end
  end
  local out = {}
  for i = 1, ntypes do out[i] = string.format('%d', (now_counts[i] or 0) + (adds[i] or 0)) end
  redis.call('HSET', counts_key, ad, table.concat(out, ' '))
end
for ad, adds in pairs(evidence) do
  decayed_add(decayed_key, ad, evidence_types, adds, now, half_life)
end
for epoch_key, by_ad in pairs(positions) do
  for ad, adds in pairs(by_ad) do
    decayed_add(epoch_key, ad, position_width, adds, now, math.huge, '%.10g')
  end
  redis.call('EXPIRE', epoch_key, epoch_ttl)
  redis.call('ZADD', epochs_key, now, epoch_key)
end
for cell, adds in pairs(credit) do decayed_add(strategies_key, cell, 2 * nstrat, adds, now, half_life) end
for key in pairs(credited_keys) do redis.call('EXPIRE', key, credited_ttl) end
return counted
