-- Takes or extends a lease: KEYS[1] the lease, ARGV[1] the holder, ARGV[2] the TTL in ms.
-- Returns 1 when the holder now holds it (it was free, or theirs), 0 when another holds it.
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
