-- uses: exclude.lib
-- Accept a validated batch. An event whose event_id was accepted before (within the dedupe
-- window, or earlier in the batch) is a duplicate; else one whose ad has no catalogue
-- record (never created, or deleted) is rejected, and neither kept nor marked as seen, so it
-- can be sent again once the ad exists; the rest are marked as seen and kept in the inbox
-- until the ingest task moves them: the batch's payload, after a line of one flag an event
-- ("1" accepted, "0" not). An apply or hide of a known ad, accepted or a duplicate, adds
-- the ad to its user's exclusions.
-- The catalogue records and the exclusion sets lie outside the {ev} slot: on Redis Cluster
-- the caller asks which ads have a record before, passes no record keys but the unknown ads,
-- and adds the exclusions after (EXCLUDE), none here.
-- Event ids are asked about by fingerprint in the sharded sets of the dedupe buckets still
-- consulted (store/dedupe.py), and by id in the two sets of raw ids earlier versions kept.
-- KEYS: inbox, inbox_due, the current dedupe bucket's record, the two legacy sets of raw
--       ids, then for each dedupe bucket consulted (the current one first) the set each
--       event's fingerprint falls in there (n keys a bucket, the same one repeated where
--       events share it), then the exclusion sets of the batch's users, then (on a single
--       Redis) the record of each of the batch's ads, in the order the events first name
--       them
-- ARGV: batch_id, now, dedupe_ttl_s, exclusions_max, exclusions_ttl_s, the KEYS index of
--       the first record (0: none passed), n, m, the n event ids and the n events' ads
--       (each a text, one a line), the payload, the n fingerprints (a line each), the
--       buckets consulted, then for each of the m events that exclude their ad for a user,
--       (its number 1..n, the KEYS index of that user's exclusion set), then (with no
--       records passed) the batch's ads that have no record
-- Returns one flag per event: 1 accepted, 0 duplicate, -1 unknown ad.
local now, record_at, n, m = ARGV[2], tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local buckets = tonumber(ARGV[13])
local first_excluded = 14
local function lines(text)
  local out = {}
  for line in string.gmatch(text, '[^\n]+') do out[#out + 1] = line end
  return out
end
local ids, ads, prints = lines(ARGV[9]), lines(ARGV[10]), lines(ARGV[12])
if #ids ~= n or #ads ~= n or #prints ~= n then
  return redis.error_reply('ERR ids, ads or fingerprints do not number n')
end
local flags, kept, batch_seen, known, excluded = {}, {}, {}, {}, {}
local unknown = {}
for j = first_excluded + 2 * m, #ARGV do unknown[ARGV[j]] = true end
-- a set asked about many members at once, a thousand a command: the events of those it holds
local function members(key, values, out, at)
  for first = 1, #values, 1000 do
    local last = math.min(first + 999, #values)
    local reply = redis.call('SMISMEMBER', key, unpack(values, first, last))
    for j = 1, #reply do
      if reply[j] == 1 then out[at[first + j - 1]] = true end
    end
  end
end
local seen, everyone = {}, {}
for e = 1, n do everyone[e] = e end
members(KEYS[4], ids, seen, everyone)
members(KEYS[5], ids, seen, everyone)
-- each dedupe set asked once, about the fingerprints that fall in it
local asked, order = {}, {}
for e = 1, buckets * n do
  local key, event = KEYS[5 + e], (e - 1) % n + 1
  local q = asked[key]
  if q == nil then q = {prints = {}, events = {}}; asked[key] = q; order[#order + 1] = key end
  q.prints[#q.prints + 1] = prints[event]
  q.events[#q.events + 1] = event
end
for _, key in ipairs(order) do members(key, asked[key].prints, seen, asked[key].events) end
local added, added_order, accepted = {}, {}, 0
for e = 1, n do
  local fp, ad = prints[e], ads[e]
  if known[ad] == nil then
    if record_at == 0 then known[ad] = not unknown[ad]
    else
      known[ad] = redis.call('EXISTS', KEYS[record_at]) == 1
      record_at = record_at + 1
    end
  end
  if batch_seen[fp] or seen[e] then
    flags[e] = 0
    kept[e] = '0'
  elseif not known[ad] then
    flags[e] = -1
    kept[e] = '0'
  else
    batch_seen[fp] = true
    local home = KEYS[5 + e]                -- its set in the current bucket
    local into = added[home]
    if into == nil then into = {}; added[home] = into; added_order[#added_order + 1] = home end
    into[#into + 1] = fp
    accepted = accepted + 1
    flags[e] = 1
    kept[e] = '1'
  end
end
for _, key in ipairs(added_order) do
  local into = added[key]
  for first = 1, #into, 1000 do
    redis.call('SADD', key, unpack(into, first, math.min(first + 999, #into)))
  end
  redis.call('EXPIRE', key, ARGV[3])
end
for j = first_excluded, first_excluded + 2 * m - 1, 2 do
  local ad, x = ads[tonumber(ARGV[j])], tonumber(ARGV[j + 1])
  if known[ad] then
    local listed = excluded[x]
    if not listed then listed = {}; excluded[x] = listed end
    listed[#listed + 1] = now; listed[#listed + 1] = ad
  end
end
if accepted > 0 then
  redis.call('HINCRBY', KEYS[3], 'ids', accepted)
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  redis.call('HSET', KEYS[1], ARGV[1], table.concat(kept) .. '\n' .. ARGV[11])
  redis.call('ZADD', KEYS[2], now, ARGV[1])
end
for x, listed in pairs(excluded) do exclude(KEYS[x], listed, ARGV[4], ARGV[5]) end
return flags
