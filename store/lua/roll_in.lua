-- Move one accepted batch from the inbox to the events stream. Idempotent: a batch
-- already moved is gone from the inbox, so a redelivered task adds nothing.
-- KEYS: inbox, inbox_due, events   ARGV: batch_id
local payload = redis.call('HGET', KEYS[1], ARGV[1])
if not payload then return 0 end
local n = 0
for line in string.gmatch(payload, '[^\n]+') do
  redis.call('XADD', KEYS[3], '*', 'e', line)
  n = n + 1
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
