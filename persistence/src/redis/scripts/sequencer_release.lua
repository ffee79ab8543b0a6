-- Give back seqs first..last when they are still the latest allocation.
-- KEYS[1] the sequence hash; ARGV[1] first; ARGV[2] last.
-- Returns 1 when released, 0 when a later allocation exists (or none matches), -1 when unseeded.
local current = redis.call('HGET', KEYS[1], 'last')
if not current then
  return -1
end
if tonumber(current) ~= tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], 'last', tonumber(ARGV[1]) - 1)
return 1
