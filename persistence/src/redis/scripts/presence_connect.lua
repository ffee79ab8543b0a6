-- Register a session (or refresh it) until now + TTL on the Redis clock.
-- KEYS[1] the user's sessions zset (member "node|session", score = expiry ms)
-- KEYS[2] the zset of users with sessions (score = latest expiry ms)
-- ARGV[1] TTL ms; ARGV[2] member; ARGV[3] user id
-- Returns 1 when the user had no live session before (came online), else 0.
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local expiry = now_ms + tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local live_before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], expiry, ARGV[2])
redis.call('PEXPIREAT', KEYS[1], expiry)
redis.call('ZADD', KEYS[2], 'GT', expiry, ARGV[3])
if live_before == 0 then
  return 1
end
return 0
