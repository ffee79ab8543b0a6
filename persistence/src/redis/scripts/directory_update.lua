-- Replace a conversation record when the stored version is exactly the previous one, and keep
-- the per-user conversation sets in step with the participants.
-- KEYS[1] conv hash; KEYS[2] members set; KEYS[3..] user-convs set of each new member
-- ARGV[1] record JSON; ARGV[2] new version; ARGV[3] conversation id; ARGV[4] key prefix;
-- ARGV[5..] new member ids (aligned with KEYS[3..])
-- Returns 1 when replaced, 0 on a version conflict (or a missing conversation).
local stored = redis.call('HGET', KEYS[1], 'version')
if not stored or tonumber(stored) ~= tonumber(ARGV[2]) - 1 then
  return 0
end
local staying = {}
for i = 5, #ARGV do
  staying[ARGV[i]] = true
end
for _, old in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if not staying[old] then
    redis.call('SREM', ARGV[4] .. 'user-convs:' .. old, ARGV[3])
    redis.call('SREM', KEYS[2], old)
  end
end
for i = 3, #KEYS do
  redis.call('SADD', KEYS[2], ARGV[i + 2])
  redis.call('SADD', KEYS[i], ARGV[3])
end
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'version', ARGV[2])
return 1
