-- Claim users whose last session expired (their node stopped refreshing).
-- KEYS[1] the zset of users with sessions (score = latest expiry ms)
-- ARGV[1] key prefix; ARGV[2] at most this many users per call
-- Returns the user ids; each is returned once cluster-wide (the first caller claims it).
-- Builds per-user keys from the prefix, so it needs a single Redis (not Redis Cluster).
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local prefix = ARGV[1]
local candidates = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local expired = {}
for i = 1, #candidates, 2 do
  local user = candidates[i]
  local sessions = prefix .. 'presence:sessions:' .. user
  redis.call('ZREMRANGEBYSCORE', sessions, '-inf', now_ms)
  local newest = redis.call('ZRANGE', sessions, -1, -1, 'WITHSCORES')
  if #newest == 0 then
    redis.call('ZREM', KEYS[1], user)
    redis.call('SET', prefix .. 'presence:last-seen:' .. user, candidates[i + 1])
    expired[#expired + 1] = user
  else
    redis.call('ZADD', KEYS[1], newest[2], user)
  end
end
return expired
