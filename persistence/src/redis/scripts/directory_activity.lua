-- Record a conversation's newest accepted seq and its time, keeping the highest seq.
-- KEYS[1] conv hash; ARGV[1] last seq; ARGV[2] time (JSON timestamp)
local current = tonumber(redis.call('HGET', KEYS[1], 'last_seq') or '0')
if tonumber(ARGV[1]) > current then
  redis.call('HSET', KEYS[1], 'last_seq', ARGV[1], 'last_activity', ARGV[2])
  return 1
end
return 0
