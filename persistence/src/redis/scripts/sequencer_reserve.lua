-- Reserve seqs for a batch of sends in one conversation, atomically.
-- KEYS[1]      the conversation's sequence hash {last, seeded}
-- KEYS[2..n+1] the ack key of each send's dedup key, in order
-- KEYS[n+2]    the index of in-flight markers: sorted set of ack keys by <until ms>
-- KEYS[n+3]    the claims of abandoned sends (see sequencer_claim.lua)
-- ARGV[1]      ack TTL in seconds
-- ARGV[2]      how long a fresh key stays reserved for its batch, in milliseconds
-- ARGV[3..n+2] per key, what the store said about it: "" not asked, "-" asked and it holds
--              no message for the key, else the ack found there (JSON)
-- ARGV[n+3..2n+2] per key, the message id and creation time the send's message gets:
--              "<message_id>|<created_at>"
-- A fresh key's ack key holds the marker "in-flight|<until ms>|<seq>|<message_id>|<created_at>"
-- (kept as long as acks) until the batch confirms (the ack replaces it) or abandons it
-- (deleted). Past <until>, the batch's node died: the marker is the abandoned send. The
-- abandoned-send reaper (sequencer_claim.lua) may replace such a marker with "reaped": the
-- reaper tombstones that send, so a retry then gets a plain fresh seq, without asking the store.
-- A retry that replaces an abandoned send claims it for the in-flight time, like the reaper
-- does: its batch settles the claim once the tombstone is in the log; if that batch fails or
-- its node dies too, the claim lapses and the reaper tombstones the send.
-- Returns {-1} when the sequence is not seeded yet (the caller seeds it and retries);
-- {-2, i...} when the store must be asked about keys i: keys without an ack in a conversation
-- older than this sequence, and keys whose marker was abandoned (the first send may have
-- reached the store through the log); the caller retries with the answers in ARGV;
-- otherwise {0, r1, ..., rn, last} where ri is the recorded ack (a JSON string), the fresh seq,
-- 0 when another batch holds the key, or {seq, marker} for a fresh seq that replaces an
-- abandoned send (the marker tells which), and last is the highest seq allocated before this
-- call (the caller catches up on the messages up to it without asking for it first).
local last = redis.call('HGET', KEYS[1], 'last')
if not last then
  return {-1}
end
local ttl = tonumber(ARGV[1])
local in_flight_ms = tonumber(ARGV[2])
local seeded = tonumber(redis.call('HGET', KEYS[1], 'seeded') or '0')
local count = #KEYS - 3
local index = KEYS[count + 2]
local claims = KEYS[count + 3]
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- Whether a marker's batch still may confirm it (markers of older versions: plain "in-flight"
-- with a short TTL of their own).
local function held(marker)
  if marker == 'in-flight' then
    return true
  end
  local until_ms = string.match(marker, '^in%-flight|(%d+)|')
  return until_ms ~= nil and tonumber(until_ms) > now_ms
end

local function is_marker(value)
  return string.sub(value, 1, 9) == 'in-flight'
end

local current = {}
local ask = {-2}
for i = 1, count do
  local value = redis.call('GET', KEYS[i + 1])
  local told = ARGV[i + 2]
  local reaped = value == 'reaped'
  if reaped then
    -- The reaper tombstones the first send: whatever the store says now, this is a new send.
    value = nil
    told = ''
  elseif (not value or (is_marker(value) and not held(value))) and told ~= '' and told ~= '-' then
    -- The store holds the message: its ack answers from now on.
    value = told
    redis.call('SET', KEYS[i + 1], value, 'EX', ttl)
    redis.call('ZREM', index, KEYS[i + 1])
  end
  current[i] = value
  local unknown = not value and seeded > 0 and not reaped
  local abandoned = value and is_marker(value) and not held(value)
  if (unknown or abandoned) and told == '' then
    ask[#ask + 1] = i
  end
end
if #ask > 1 then
  return ask
end

local answer = {0}
for i = 1, count do
  local value = current[i]
  if value and is_marker(value) and held(value) then
    answer[i + 1] = 0
  elseif value and not is_marker(value) then
    answer[i + 1] = value
  else
    local seq = redis.call('HINCRBY', KEYS[1], 'last', 1)
    local until_ms = now_ms + in_flight_ms
    local marker = 'in-flight|' .. until_ms .. '|' .. seq .. '|' .. ARGV[count + i + 2]
    redis.call('SET', KEYS[i + 1], marker, 'EX', ttl)
    redis.call('ZADD', index, until_ms, KEYS[i + 1])
    if value then
      local claim = string.match(value, '^in%-flight|%d+|(.*)$') .. '|' .. KEYS[i + 1]
      redis.call('ZADD', claims, until_ms, claim)
      answer[i + 1] = {seq, value}
    else
      answer[i + 1] = seq
    end
  end
end
answer[count + 2] = tonumber(last)
return answer
