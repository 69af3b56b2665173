-- uses: decay.lib
-- Fold an epoch's set-aside position counts into the decayed pair counts, once: the step
-- applies only if the folding key is still there, and deletes it; the epoch leaves the set
-- of epochs to fold unless new counts came in meanwhile.
-- KEYS: folding key, pairs hash, the position epochs' set, epoch key
-- ARGV: now, half_life, width, then the epoch's pair counts (width numbers)
-- Returns 1 if folded, 0 if another run had folded it.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local adds = {}
for i = 4, #ARGV do adds[i - 3] = tonumber(ARGV[i]) end
decayed_add(KEYS[2], 'pairs', tonumber(ARGV[3]), adds, tonumber(ARGV[1]), tonumber(ARGV[2]))
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[4]) == 0 then redis.call('ZREM', KEYS[3], KEYS[4]) end
return 1
