-- Take expired ads out of the indexes in one step, so an ad renewed meanwhile is kept, and
-- note the summaries removed in the catalogue's change log (as the Python writers do).
-- KEYS: ads_expiry, ads_geo, ads_summary, ads_cards, catalog_changes
-- ARGV: now, the current summary layout's tag, where its serial begins (1-based; 8 bytes,
-- little-endian), the most ids one change entry lists ("*" beyond), change entries kept
-- Returns the ids taken out.
local tag, at = ARGV[2], tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local removed = {}
for _, id in ipairs(ids) do
  local value = redis.call('HGET', KEYS[3], id)
  if value and string.sub(value, 1, #tag) == tag then
    local serial = 0
    for i = 7, 0, -1 do serial = serial * 256 + string.byte(value, at + i) end
    redis.call('HDEL', KEYS[4], string.format('%.0f', serial))
  end
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  if redis.call('HDEL', KEYS[3], id) == 1 then removed[#removed + 1] = id end
end
if #removed > 0 then
  local listed = '*'
  if #removed <= tonumber(ARGV[4]) then listed = table.concat(removed, ' ') end
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', 'ids', listed, 'voids', '0')
end
return ids
