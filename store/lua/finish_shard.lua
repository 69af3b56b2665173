-- A shard of a regeneration run reports, once: its report is kept and the run's count of
-- finished shards goes up by one, unless this shard had already reported (a redelivered
-- task that ran again). KEYS: the run's hash, its shards' reports hash
-- ARGV: the shard's index, its report (JSON)   Returns {shards finished, shards in the run}.
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'done', 1)
end
return {tonumber(redis.call('HGET', KEYS[1], 'done') or '0'),
        tonumber(redis.call('HGET', KEYS[1], 'shards') or '0')}
