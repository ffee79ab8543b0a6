-- The abandoned reservations: in-flight markers past their <until>, oldest first.
-- KEYS[1] the index of in-flight markers (sorted set of ack keys by <until ms>); ARGV[1] how
-- many to look at. Index entries whose key no longer holds a marker (confirmed, abandoned,
-- reaped, expired) are dropped; a marker renewed by a retry is re-scored.
-- Returns {ack key 1, marker 1, ack key 2, marker 2, ...}.
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[1]))
local expired = {}
for _, ack_key in ipairs(due) do
  local value = redis.call('GET', ack_key)
  local until_ms = value and string.match(value, '^in%-flight|(%d+)|')
  if not until_ms then
    redis.call('ZREM', KEYS[1], ack_key)
  elseif tonumber(until_ms) > now_ms then
    redis.call('ZADD', KEYS[1], until_ms, ack_key)
  else
    expired[#expired + 1] = ack_key
    expired[#expired + 1] = value
  end
end
return expired
