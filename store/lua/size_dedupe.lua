-- Decide once how many sets a dedupe bucket spreads its fingerprints over, from how many
-- ids the bucket before held (store/dedupe.py), and say it.
-- KEYS: the bucket's record, the record of the bucket before (hashes: shards, ids)
-- ARGV: least shards, ids a set is sized for, the record's time to live (s)
-- Returns the bucket's shard count.
local shards = redis.call('HGET', KEYS[1], 'shards')
if shards then return tonumber(shards) end
local before = tonumber(redis.call('HGET', KEYS[2], 'ids') or '0')
shards = math.max(tonumber(ARGV[1]), math.ceil(before / tonumber(ARGV[2])))
redis.call('HSET', KEYS[1], 'shards', shards, 'ids', 0)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return shards
