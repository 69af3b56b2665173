-- A shard of a regeneration run reports, once: its report is kept and the run's count of
-- finished shards goes up by one, unless this shard had already reported (a redelivered
-- task that ran again) or the run is unknown (its keys expired). KEYS: the run's hash, its
-- shards' reports hash   ARGV: the shard's index, its report (JSON), the keys' ttl (s)
-- Returns {shards finished, shards in the run, 1 if this report completed the run else 0}.
if redis.call('HEXISTS', KEYS[1], 'shards') == 0 then return {0, 0, 0} end
local completed = 0
local shards = tonumber(redis.call('HGET', KEYS[1], 'shards'))
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 1 then
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  if redis.call('HINCRBY', KEYS[1], 'done', 1) == shards then completed = 1 end
end
return {tonumber(redis.call('HGET', KEYS[1], 'done')), shards, completed}
