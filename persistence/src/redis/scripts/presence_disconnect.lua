-- Remove a session.
-- KEYS[1] the user's sessions zset; KEYS[2] users with sessions; KEYS[3] the user's last_seen
-- ARGV[1] member; ARGV[2] user id
-- Returns 1 when it was the user's last live session (went offline), else 0.
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) > 0 then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[2])
if removed == 1 then
  redis.call('SET', KEYS[3], now_ms)
  return 1
end
return 0
