-- Store cell feeds only if no ad was removed or moved since the snapshot they were built from.
-- KEYS: catalog_epoch, feed keys...   ARGV: expected_epoch, ttl_s, packed values...
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return -1 end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ARGV[2])
end
return #KEYS - 1
