-- Settle one client's spending in one web process with the client's shared token bucket,
-- and say what is left. The bucket refills at `rate` tokens a second up to `burst`; the
-- spending is taken whole, so the bucket may owe tokens (down to -burst), which the refill
-- pays back before the client is let through again. Time is the server's, so that web
-- hosts whose clocks differ refill alike.
-- KEYS: the bucket (a hash: tokens, at_ms)
-- ARGV: tokens spent since the last settling, rate (tokens a second), burst
-- Returns the tokens left, as a string (a float).
local spent, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at_ms')
local tokens, at_ms = tonumber(state[1]), tonumber(state[2])
if tokens == nil or at_ms == nil then tokens, at_ms = burst, now_ms end
tokens = math.min(burst, tokens + rate * math.max(0, now_ms - at_ms) / 1000) - spent
tokens = math.max(tokens, -burst)
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at_ms', now_ms)
-- once full again, the bucket says nothing a missing one would not: let it expire then
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return string.format('%.6f', tokens)
