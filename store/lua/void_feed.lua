-- On Redis Cluster: void one cell's feed after a catalogue change moved catalog:epoch to
-- ARGV[1]: delete it, and mark the cell so that a feed built from an earlier epoch is
-- refused (SET_FEED). The mark never moves back.
-- KEYS: the feed, the cell's void mark (one slot)   ARGV: the new epoch, the mark's ttl_s
local void = tonumber(redis.call('GET', KEYS[2]) or '-1')
if void < tonumber(ARGV[1]) then redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2]) end
return redis.call('DEL', KEYS[1])
