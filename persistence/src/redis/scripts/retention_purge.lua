-- Raises how far retention purged a conversation, never lowers it.
-- KEYS[1]: the hash of purges. ARGV[1]: the conversation id. ARGV[2]: the purged-through seq.
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local wanted = tonumber(ARGV[2])
if wanted > current then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 1
