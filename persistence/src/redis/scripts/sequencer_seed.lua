-- Seed a conversation's sequence once: concurrent seeders agree on the first value written.
-- KEYS[1] the sequence hash; ARGV[1] the newest seq in the store.
-- Returns the current last seq.
if redis.call('HSETNX', KEYS[1], 'last', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'seeded', ARGV[1])
  return tonumber(ARGV[1])
end
return tonumber(redis.call('HGET', KEYS[1], 'last'))
