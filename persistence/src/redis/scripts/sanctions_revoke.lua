-- Raises a user's token revocation limit, never lowers it.
-- KEYS[1]: the user's sanctions hash. ARGV[1]: valid_from (seconds since the epoch).
local current = tonumber(redis.call('HGET', KEYS[1], 'tokens_valid_from') or '-1')
local wanted = tonumber(ARGV[1])
if wanted > current then
  redis.call('HSET', KEYS[1], 'tokens_valid_from', ARGV[1])
end
return 1
