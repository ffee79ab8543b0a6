-- Token bucket per user, refilled continuously, timed by the Redis clock (no node clock skew).
-- KEYS[1] the user's bucket hash {tokens, updated_at_us}
-- ARGV[1] tokens per second; ARGV[2] burst; ARGV[3] cost (already capped at burst)
-- Returns {1, 0} when allowed, {0, retry_after_ms} (at least 1) when limited.
local per_second = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
local stored = redis.call('HMGET', KEYS[1], 'tokens', 'updated_at_us')
local tokens = burst
if stored[1] and stored[2] then
  local elapsed = math.max(0, now_us - tonumber(stored[2])) / 1000000
  tokens = math.min(burst, tonumber(stored[1]) + elapsed * per_second)
end
local allowed = tokens >= cost
if allowed then
  tokens = tokens - cost
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'updated_at_us', now_us)
-- A full bucket is the same as none: let the key go once it would have refilled.
local refill_ms = math.ceil((burst - tokens) / per_second * 1000) + 1000
redis.call('PEXPIRE', KEYS[1], refill_ms)
if allowed then
  return {1, 0}
end
return {0, math.max(1, math.ceil((cost - tokens) / per_second * 1000))}
