-- Create a conversation; for a direct pair, return the existing one instead.
-- KEYS[1] conv hash; KEYS[2] members set; KEYS[3] direct pair key (unused unless ARGV[4] = "1");
-- KEYS[4..] user-convs set of each member
-- ARGV[1] record JSON; ARGV[2] version; ARGV[3] conversation id; ARGV[4] "1" for a direct pair;
-- ARGV[5] key prefix; ARGV[6..] member ids (aligned with KEYS[4..])
-- Returns {0} created, {1, record JSON} existing direct conversation, {2} id already taken.
if ARGV[4] == '1' then
  local existing = redis.call('GET', KEYS[3])
  if existing then
    local record = redis.call('HGET', ARGV[5] .. 'conv:' .. existing, 'record')
    if record then
      return {1, record}
    end
  end
end
if redis.call('HEXISTS', KEYS[1], 'record') == 1 then
  return {2}
end
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'version', ARGV[2])
for i = 4, #KEYS do
  redis.call('SADD', KEYS[2], ARGV[i + 2])
  redis.call('SADD', KEYS[i], ARGV[3])
end
if ARGV[4] == '1' then
  redis.call('SET', KEYS[3], ARGV[3])
end
return {0}
