-- Drop the credits a settle read from the head of a partition's credits list, only if they
-- are still its head: two settles of one partition that read the same head both apply it
-- (harmless: a feed is credited once) and only the first drops it, so none is dropped
-- unread. KEYS: the credits list   ARGV: the texts read, in order
-- Returns 1 dropped, 0 left (another settle dropped them first).
local head = redis.call('LRANGE', KEYS[1], 0, #ARGV - 1)
if #head ~= #ARGV then return 0 end
for i = 1, #ARGV do
  if head[i] ~= ARGV[i] then return 0 end
end
redis.call('LTRIM', KEYS[1], #ARGV, -1)
return 1
