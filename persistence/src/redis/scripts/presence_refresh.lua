-- Extend this node's sessions to now + TTL.
-- KEYS[1] the zset of users with sessions; KEYS[2..] the sessions zset of each user
-- ARGV[1] TTL ms; ARGV[2..] per KEYS[i + 1]: "user id", then the member (two args per user)
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local expiry = now_ms + tonumber(ARGV[1])
for i = 2, #KEYS do
  local user = ARGV[2 * i - 2]
  local member = ARGV[2 * i - 1]
  redis.call('ZADD', KEYS[i], expiry, member)
  redis.call('PEXPIREAT', KEYS[i], expiry)
  redis.call('ZADD', KEYS[1], 'GT', expiry, user)
end
return #KEYS - 1
