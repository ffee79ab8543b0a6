-- Store messages of one conversation, newer versions only, then trim to the seqs put most
-- recently (a changed older message stays cached while newer ones arrive).
-- KEYS[1] hash seq -> "{version}|{json}", or "{version}d|{json}" for a deleted message;
-- KEYS[2] zset of the cached seqs (score = put order)
-- ARGV[1] capacity; ARGV[2] TTL in ms (0: none); then quadruples (seq, version, deleted 0/1, json)
-- A deletion is final: a deleted version replaces any live one and no live version replaces
-- it (MessageRecord::supersedes); otherwise the higher version wins.
local capacity = tonumber(ARGV[1])
local ttl_ms = tonumber(ARGV[2])
local newest = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local tick = tonumber(newest[2] or '0')
for i = 3, #ARGV, 4 do
  local seq = ARGV[i]
  local version = tonumber(ARGV[i + 1])
  local deleted = ARGV[i + 2] == '1'
  local stored = redis.call('HGET', KEYS[1], seq)
  local newer = true
  if stored then
    local separator = string.find(stored, '|', 1, true)
    local head = string.sub(stored, 1, separator - 1)
    local stored_deleted = string.sub(head, -1) == 'd'
    if stored_deleted then
      head = string.sub(head, 1, -2)
    end
    if deleted ~= stored_deleted then
      newer = deleted
    else
      newer = version > tonumber(head)
    end
  end
  if newer then
    local marker = ''
    if deleted then
      marker = 'd'
    end
    redis.call('HSET', KEYS[1], seq, ARGV[i + 1] .. marker .. '|' .. ARGV[i + 3])
    tick = tick + 1
    redis.call('ZADD', KEYS[2], tick, seq)
  end
end
local excess = redis.call('ZCARD', KEYS[2]) - capacity
while excess > 0 do
  -- In chunks: unpack() has a limit on the number of values.
  local chunk = math.min(excess, 1000)
  local oldest = redis.call('ZRANGE', KEYS[2], 0, chunk - 1)
  redis.call('HDEL', KEYS[1], unpack(oldest))
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, chunk - 1)
  excess = excess - chunk
end
if ttl_ms > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
  redis.call('PEXPIRE', KEYS[2], ttl_ms)
end
return redis.call('ZCARD', KEYS[2])
