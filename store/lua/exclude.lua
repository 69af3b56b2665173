-- uses: exclude.lib
-- Exclusions for several users. KEYS: their exclusion sets
-- ARGV: max_ads, ttl_s, now, then per key: the number of its ads, the ads.
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
