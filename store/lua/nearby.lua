-- Live ads near a point, nearest first, with their exact coordinates from the catalogue.
-- KEYS: ads_geo, ads_expiry   ARGV: lon, lat, search_radius_km, count, now, ad_key_prefix
-- Returns flat (ad_id, lat, lon) triples; expired ads are skipped, and the search widens
-- its COUNT until `count` live ads are found or the radius holds no more.
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
