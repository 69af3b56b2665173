-- On Redis Cluster: store one cell's packed feed unless the catalogue has voided the cell
-- since the epoch the feed was built from (a catalogue change voids a cell with VOID_FEED
-- after moving catalog:epoch, so either the void comes first and this refuses, or it comes
-- after and deletes the feed).
-- KEYS: the feed, the cell's void mark (one slot)   ARGV: epoch built from, packed, ttl_s
-- Returns 1 stored, 0 refused.
local void = tonumber(redis.call('GET', KEYS[2]) or '-1')
if void > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
