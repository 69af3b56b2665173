-- uses: decay.lib
-- Count served feeds per cell and strategy, once: the step applies only if the cursor (the
-- last served entry counted) is still where the caller read from, and moves it on.
-- KEYS: served_cursor, strategies
-- ARGV: expected_cursor, new_cursor, now, half_life, n strategies,
--       then (fields, strategy_index, weight) triples: the fields a feed counts in besides
--       '*' (its cell, then its region's field when regions are kept; space-separated)
if (redis.call('GET', KEYS[1]) or '0-0') ~= ARGV[1] then return -1 end
local now, half_life, nstrat = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local served = {}
local n = 0
for i = 6, #ARGV, 3 do
  local s, weight = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local function add(cell)
    local t = served[cell]
    if not t then t = {}; served[cell] = t end
    t[s] = (t[s] or 0) + weight
  end
  for field in string.gmatch(ARGV[i], '%S+') do add(field) end
  add('*')
  n = n + 1
end
for cell, adds in pairs(served) do decayed_add(KEYS[2], cell, 2 * nstrat, adds, now, half_life) end
redis.call('SET', KEYS[1], ARGV[2])
return n
