-- Live ads near a point, nearest first, with their exact coordinates from their summaries
-- (the geo set keeps them rounded to its 52-bit cells).
-- KEYS: ads_geo, ads_expiry, ads_summary
-- ARGV: lon, lat, search_radius_km, count, now, then the summary layouts' tags (a summary
--       starting with none of them is of the first layout, untagged); every layout begins
--       with lat and lon, 8-byte little-endian doubles, after its tag
-- Returns flat (ad_id, lat, lon) triples, coordinates as text (Redis would cut a Lua number
-- to an integer); expired ads and ads without a summary are skipped, and the search widens
-- its COUNT until `count` live ads are found or the radius holds no more.
local want, now = tonumber(ARGV[4]), tonumber(ARGV[5])
-- the double whose 8 bytes start at `at` (finite and normal, as a coordinate is)
local function double_at(value, at)
  local b = {string.byte(value, at, at + 7)}
  local mantissa = b[7] % 16
  for i = 6, 1, -1 do mantissa = mantissa * 256 + b[i] end
  local exponent = (b[8] % 128) * 16 + math.floor(b[7] / 16)
  local x = 0
  if exponent > 0 then x = (mantissa + 2 ^ 52) * 2 ^ (exponent - 1075) end
  if b[8] >= 128 then x = -x end
  return string.format('%.17g', x)
end
local function coordinates(value)
  local at = 1
  for i = 6, #ARGV do
    if string.sub(value, 1, #ARGV[i]) == ARGV[i] then at = #ARGV[i] + 1 end
  end
  return double_at(value, at), double_at(value, at + 8)
end
local count = want
while true do
  local found = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[1], ARGV[2],
                           'BYRADIUS', ARGV[3], 'km', 'ASC', 'COUNT', count)
  local out = {}
  local live = 0
  for _, id in ipairs(found) do
    local exp = tonumber(redis.call('ZSCORE', KEYS[2], id) or 'inf')
    if exp > now then
      local value = redis.call('HGET', KEYS[3], id)
      if value then
        local lat, lon = coordinates(value)
        out[#out + 1] = id; out[#out + 1] = lat; out[#out + 1] = lon
        live = live + 1
        if live >= want then return out end
      end
    end
  end
  if #found < count then return out end
  count = count * 2
end
