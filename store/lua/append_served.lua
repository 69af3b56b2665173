-- Append many served feeds to the served stream in one call, once: a flush retried after
-- its reply was lost (the write had happened) appends nothing the second time.
-- KEYS: served, flush marker ({served}:flush:<id>)
-- ARGV: maxlen, marker_ttl_s, field count n, n field names, then n values per entry
-- Returns the entries appended (0 for a repeat).
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then return 0 end
local n = tonumber(ARGV[3])
local entry = {}
for i = 4 + n, #ARGV, n do
  for j = 1, n do
    entry[2 * j - 1] = ARGV[3 + j]
    entry[2 * j] = ARGV[i + j - 1]
  end
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(entry))
end
return (#ARGV - 3 - n) / n
