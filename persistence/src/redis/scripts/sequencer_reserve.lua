-- Reserve seqs for a batch of sends in one conversation, atomically.
-- KEYS[1]      the conversation's sequence hash {last, seeded}
-- KEYS[2..n+1] the ack key of each dedup key, in order
-- ARGV[1]      ack TTL in seconds
-- ARGV[2]      "1" when the caller already asked the store about older acks, else "0"
-- ARGV[3..n+2] per key: the ack found in the store (JSON), or "" (only when ARGV[2] is "1")
-- ARGV[n+3]    how long a fresh key stays reserved for this batch, in milliseconds
-- A fresh key's ack key holds "in-flight" until the batch confirms (the ack replaces it) or
-- abandons it (deleted), or the time runs out.
-- Returns {-1} when the sequence is not seeded yet (the caller seeds it and retries);
-- {-2, i...} when the conversation predates this sequence and keys i miss a recorded ack (the
-- caller looks them up in the store and retries with ARGV[2] = "1");
-- otherwise {0, r1, ..., rn} where ri is the recorded ack (a JSON string), the fresh seq, or 0
-- when another batch holds the key.
local last = redis.call('HGET', KEYS[1], 'last')
if not last then
  return {-1}
end
local ttl = tonumber(ARGV[1])
local store_checked = ARGV[2] == '1'
local seeded = tonumber(redis.call('HGET', KEYS[1], 'seeded') or '0')
local count = #KEYS - 1
local in_flight_ms = tonumber(ARGV[count + 3])
local acks = {}
local misses = {}
for i = 1, count do
  local ack = redis.call('GET', KEYS[i + 1])
  if not ack and store_checked and ARGV[i + 2] ~= '' then
    ack = ARGV[i + 2]
    redis.call('SET', KEYS[i + 1], ack, 'EX', ttl)
  end
  acks[i] = ack
  if not ack then
    misses[#misses + 1] = i
  end
end
if seeded > 0 and not store_checked and #misses > 0 then
  local answer = {-2}
  for _, i in ipairs(misses) do
    answer[#answer + 1] = i
  end
  return answer
end
local answer = {0}
for i = 1, count do
  if acks[i] == 'in-flight' then
    answer[i + 1] = 0
  elseif acks[i] then
    answer[i + 1] = acks[i]
  else
    redis.call('SET', KEYS[i + 1], 'in-flight', 'PX', in_flight_ms)
    answer[i + 1] = redis.call('HINCRBY', KEYS[1], 'last', 1)
  end
end
return answer
