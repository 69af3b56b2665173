-- Move a cursor (a stream id kept in a string) from where the caller read it to a new
-- place, unless another run moved it first.
-- KEYS: cursor
-- ARGV: expected (the cursor as read; '0-0' when it was absent), new
-- Returns 1 when moved, 0 when the cursor was elsewhere.
if (redis.call('GET', KEYS[1]) or '0-0') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
