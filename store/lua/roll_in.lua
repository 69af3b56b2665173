-- Move one accepted batch from the inbox to the events stream, as one entry: its flags
-- ('k': one an event, "1" if accepted) and its payload ('b'). A batch an earlier version
-- accepted (one event a line) becomes one entry an event ('e'). Idempotent: a batch
-- already moved is gone from the inbox, so a redelivered task adds nothing.
-- KEYS: inbox, inbox_due, events   ARGV: batch_id
-- Returns the events moved.
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return 0 end
local n = 0
if string.sub(value, 1, 1) == '{' then
  for line in string.gmatch(value, '[^\n]+') do
    redis.call('XADD', KEYS[3], '*', 'e', line)
    n = n + 1
  end
else
  local cut = string.find(value, '\n', 1, true)
  local kept = string.sub(value, 1, cut - 1)
  redis.call('XADD', KEYS[3], '*', 'k', kept, 'b', string.sub(value, cut + 1))
  n = select(2, string.gsub(kept, '1', ''))
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
