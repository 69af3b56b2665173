-- Take expired ads out of the indexes in one step, so an ad renewed meanwhile is kept, and
-- note the summaries removed in the catalogue's change log (as the Python writers do).
-- KEYS: ads_expiry, ads_geo, ads_summary, ads_cards, catalog_changes
-- ARGV: now, the most ids one change entry lists ("*" beyond), change entries kept, then
-- for each summary layout with a serial, its tag and where its serial begins (1-based; 8
-- bytes, little-endian)
-- Returns the ids taken out.
local function serial_of(value)
  for i = 4, #ARGV, 2 do
    local tag, at = ARGV[i], tonumber(ARGV[i + 1])
    if string.sub(value, 1, #tag) == tag then
      local serial = 0
      for j = 7, 0, -1 do serial = serial * 256 + string.byte(value, at + j) end
      return serial
    end
  end
  return nil
end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local removed = {}
for _, id in ipairs(ids) do
  local value = redis.call('HGET', KEYS[3], id)
  local serial = value and serial_of(value)
  if serial then redis.call('HDEL', KEYS[4], string.format('%.0f', serial)) end
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  if redis.call('HDEL', KEYS[3], id) == 1 then removed[#removed + 1] = id end
end
if #removed > 0 then
  local listed = '*'
  if #removed <= tonumber(ARGV[2]) then listed = table.concat(removed, ' ') end
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[3], '*', 'ids', listed, 'voids', '0')
end
return ids
