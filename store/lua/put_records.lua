-- Replace ad records, each with exactly the fields given. KEYS: the records' keys
-- ARGV: per key: the number of its fields, then its field names and values in turn.
local i = 1
for k = 1, #KEYS do
  local n = tonumber(ARGV[i])
  redis.call('DEL', KEYS[k])
  if n > 0 then
    redis.call('HSET', KEYS[k], unpack(ARGV, i + 1, i + 2 * n))
  end
  i = i + 2 * n + 1
end
return #KEYS
