-- uses: exclude.lib
-- Accept a validated batch. An event whose event_id was accepted before (this window or
-- the last, or earlier in the batch) is a duplicate; else one whose ad has no catalogue
-- record (never created, or deleted) is rejected, and neither kept nor marked as seen, so it
-- can be sent again once the ad exists; the rest are marked as seen and kept in the inbox
-- until the ingest task moves them: the batch's payload, after a line of one flag an event
-- ("1" accepted, "0" not). An apply or hide of a known ad, accepted or a duplicate, adds
-- the ad to its user's exclusions.
-- The catalogue records and the exclusion sets lie outside the {ev} slot: on Redis Cluster
-- the caller asks which ads have a record before, passes no record keys but the unknown ads,
-- and adds the exclusions after (EXCLUDE), none here.
-- KEYS: inbox, inbox_due, seen_now, seen_prev, then the exclusion sets of the batch's users,
--       then (on a single Redis) the record of each of the batch's ads, in the order the
--       events first name them
-- ARGV: batch_id, now, seen_ttl_s, exclusions_max, exclusions_ttl_s, the KEYS index of the
--       first record (0: none passed), n, m, the n event ids and the n events' ads (each a
--       text, one a line), the payload, then for each of the m events that exclude their
--       ad for a user, (its number 1..n, the KEYS index of that user's exclusion set), then
--       (with no records passed) the batch's ads that have no record
-- Returns one flag per event: 1 accepted, 0 duplicate, -1 unknown ad.
local now, record_at, n, m = ARGV[2], tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local first_excluded = 12
local function lines(text)
  local out = {}
  for line in string.gmatch(text, '[^\n]+') do out[#out + 1] = line end
  return out
end
local ids, ads = lines(ARGV[9]), lines(ARGV[10])
if #ids ~= n or #ads ~= n then return redis.error_reply('ERR ids or ads do not number n') end
local flags, kept, kept_ids, batch_seen, known, excluded = {}, {}, {}, {}, {}, {}
local unknown = {}
for j = first_excluded + 2 * m, #ARGV do unknown[ARGV[j]] = true end
-- each seen set asked about the whole batch at once, a thousand ids a command
local function seen_in(key)
  local out = {}
  for first = 1, n, 1000 do
    local last = math.min(first + 999, n)
    local reply = redis.call('SMISMEMBER', key, unpack(ids, first, last))
    for j = 1, #reply do out[first + j - 1] = reply[j] end
  end
  return out
end
local seen_now, seen_prev = seen_in(KEYS[3]), seen_in(KEYS[4])
for e = 1, n do
  local id, ad = ids[e], ads[e]
  if known[ad] == nil then
    if record_at == 0 then known[ad] = not unknown[ad]
    else
      known[ad] = redis.call('EXISTS', KEYS[record_at]) == 1
      record_at = record_at + 1
    end
  end
  if batch_seen[id] or seen_now[e] == 1 or seen_prev[e] == 1 then
    flags[e] = 0
    kept[e] = '0'
  elseif not known[ad] then
    flags[e] = -1
    kept[e] = '0'
  else
    batch_seen[id] = true
    kept_ids[#kept_ids + 1] = id
    flags[e] = 1
    kept[e] = '1'
  end
end
for first = 1, #kept_ids, 1000 do
  redis.call('SADD', KEYS[3], unpack(kept_ids, first, math.min(first + 999, #kept_ids)))
end
for j = first_excluded, first_excluded + 2 * m - 1, 2 do
  local ad, x = ads[tonumber(ARGV[j])], tonumber(ARGV[j + 1])
  if known[ad] then
    local listed = excluded[x]
    if not listed then listed = {}; excluded[x] = listed end
    listed[#listed + 1] = now; listed[#listed + 1] = ad
  end
end
if #kept_ids > 0 then
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  redis.call('HSET', KEYS[1], ARGV[1], table.concat(kept) .. '\n' .. ARGV[11])
  redis.call('ZADD', KEYS[2], now, ARGV[1])
end
for x, listed in pairs(excluded) do exclude(KEYS[x], listed, ARGV[4], ARGV[5]) end
return flags
