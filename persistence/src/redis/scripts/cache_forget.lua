-- Forget the cached messages of one conversation up to a seq (retention purged them).
-- KEYS[1] hash seq -> cached message; KEYS[2] zset of the cached seqs; ARGV[1] the last seq to forget.
local through = tonumber(ARGV[1])
local forgotten = 0
for _, seq in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if tonumber(seq) <= through then
    redis.call('HDEL', KEYS[1], seq)
    redis.call('ZREM', KEYS[2], seq)
    forgotten = forgotten + 1
  end
end
return forgotten
