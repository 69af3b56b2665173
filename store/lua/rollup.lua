-- uses: decay.lib
-- uses: credit.lib
-- Count a block of events and XACK its entries in one step. The caller sums the block (per
-- ad, per counter, per position epoch); the step counts it only if every entry of the block
-- is still pending (delivered, never acknowledged), so an entry reclaimed and counted
-- elsewhere is never counted twice: if any is not, nothing is written and the step returns
-- those entries, for the caller to sum the block again without them.
-- It adds each ad's counters ("n1 n2 ...", one per type), the per-day and all-time counters,
-- each ad's decayed evidence, its impressions and views by position in the epoch its feed was
-- served in (for the examination curve: a field "<ad> <column>" per ad and column, an
-- integer added to in place), and credits the strategy (and cell) of the feed an apply came
-- from, once per feed: a feed earns its weight if it led to any apply.
-- In a partition other than 0 (EVENT_PARTITIONS) the credits section is empty: the block's
-- credits come as one text after the sections, pushed onto the partition's credits list, for
-- SETTLE_CREDITS to apply in partition 0 (whose keys this step cannot touch).
-- KEYS: events, counts, decayed, strategies (in another partition: its credits list), the
--       all-time ctr hash, the position epochs' set, then the keys the sections below name
--       by index (ctr days, credited-feed days, position epochs)
-- ARGV: group, now, half_life, credited_ttl_s, position_width, epoch_ttl_s, n_types,
--       evidence_types, n_strategies, counted (returned when the block counts), then five
--       sections, each its item count then its items:
--       entries: entry_id (oldest first: else each is checked alone, which is slower)
--       ad counters: ad_id, then n_types counts
--       counters: key_index, field, n (HINCRBY)
--       evidence: ad_id, then evidence_types weights
--       positions: key_index, ad_id, column, n
--       credits: key_index (its credited-feed set), feed_id, cell, strategy (1-based), weight
--       then the credits to push onto the credits list ('' for none)
-- Returns counted, or the entries that are no longer pending (as a list).
local group, now, half_life = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local credited_ttl, epoch_ttl = ARGV[4], ARGV[6]
local ntypes, evidence_types = tonumber(ARGV[7]), tonumber(ARGV[8])
local nstrat, counted = tonumber(ARGV[9]), tonumber(ARGV[10])
local at = 11

local n = tonumber(ARGV[at])
local first, last = at + 1, at + n
at = last + 1
if n > 0 then
  local pending = {}
  local reply = redis.call('XPENDING', KEYS[1], group, ARGV[first], ARGV[last], n)
  for _, p in ipairs(reply) do pending[p[1]] = true end
  local gone = {}
  for i = first, last do
    -- absent from the range's reply: pending for no consumer, or crowded out by another
    -- consumer's entries in the range, which the entry's own check tells apart
    if not pending[ARGV[i]]
        and #redis.call('XPENDING', KEYS[1], group, ARGV[i], ARGV[i], 1) == 0 then
      gone[#gone + 1] = ARGV[i]
    end
  end
  if #gone > 0 then return gone end
  for i = first, last, 1000 do
    redis.call('XACK', KEYS[1], group, unpack(ARGV, i, math.min(i + 999, last)))
  end
end

local function cut(width)      -- the next section: its item count, and where it starts
  local items = tonumber(ARGV[at])
  local start = at + 1
  at = start + items * width
  return start, at - 1
end

local counts_key = KEYS[2]
local s, e = cut(1 + ntypes)
for i = s, e, 1 + ntypes do
  local ad, now_counts = ARGV[i], {}
  local cur = redis.call('HGET', counts_key, ad)
  if cur then
    local j = 1
    for x in string.gmatch(cur, '%S+') do now_counts[j] = tonumber(x); j = j + 1 end
  end
  local out = {}
  for j = 1, ntypes do
    out[j] = string.format('%d', (now_counts[j] or 0) + tonumber(ARGV[i + j]))
  end
  redis.call('HSET', counts_key, ad, table.concat(out, ' '))
end

s, e = cut(3)
for i = s, e, 3 do redis.call('HINCRBY', KEYS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2]) end

s, e = cut(1 + evidence_types)
for i = s, e, 1 + evidence_types do
  local adds = {}
  for j = 1, evidence_types do adds[j] = tonumber(ARGV[i + j]) end
  decayed_add(KEYS[3], ARGV[i], evidence_types, adds, now, half_life)
end

local touched = {}
s, e = cut(4)
for i = s, e, 4 do
  local key = KEYS[tonumber(ARGV[i])]
  redis.call('HINCRBY', key, ARGV[i + 1] .. ' ' .. ARGV[i + 2], ARGV[i + 3])
  touched[key] = true
end
for key in pairs(touched) do
  redis.call('EXPIRE', key, epoch_ttl)
  redis.call('ZADD', KEYS[6], now, key)
end

s, e = cut(5)
credit_feeds(KEYS[4], s, e, nstrat, now, half_life, credited_ttl)
if ARGV[at] ~= '' then redis.call('RPUSH', KEYS[4], ARGV[at]) end
return counted
