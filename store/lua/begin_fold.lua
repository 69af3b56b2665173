-- Set an epoch's position counts aside for folding: events still arriving for the epoch
-- start a fresh key, so nothing counted after the fold read them is lost with it.
-- KEYS: epoch key, its folding key   ARGV: none
-- Returns 2 if a fold of the epoch was left unfinished (finish that first), 1 if set aside,
-- 0 if there is nothing to fold.
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
return 1
