-- Settle abandoned reservations, each exactly once against retries (sequencer_reserve.lua) and
-- other reapers.
-- KEYS[1] the index of in-flight markers; KEYS[2] the claims: sorted set of
-- "<seq>|<message_id>|<created_at>|<ack key>" by the end of their lease in ms.
-- ARGV[1] the claim lease in ms; ARGV[2] the ack TTL in seconds; ARGV[3] how many lapsed claims
-- to hand out again; then per abandoned reservation found by sequencer_expired.lua three
-- arguments: its ack key, its marker, and what the store holds for the key ("-": nothing,
-- else the stored message's ack, JSON).
-- A reservation whose key still holds the same marker (no retry, confirm or other reaper came
-- first) becomes the stored ack, or is claimed: its key holds "reaped" (a retry gets a fresh
-- seq, not the abandoned send to tombstone) and the claim is leased to the caller.
-- Returns {s1, ..., sn, claim...}: si is 0 (skipped: the key changed), 1 (claimed) or 2 (the
-- stored ack recorded); then the claims leased to the caller: the lapsed ones, then the new.
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lease_until = now_ms + tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local claims = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[3]))
for _, claim in ipairs(claims) do
  redis.call('ZADD', KEYS[2], lease_until, claim)
end
local reply = {}
for i = 4, #ARGV, 3 do
  local ack_key, marker, told = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('GET', ack_key) ~= marker then
    reply[#reply + 1] = 0
  elseif told ~= '-' then
    redis.call('SET', ack_key, told, 'EX', ttl)
    redis.call('ZREM', KEYS[1], ack_key)
    reply[#reply + 1] = 2
  else
    local claim = string.match(marker, '^in%-flight|%d+|(.*)$') .. '|' .. ack_key
    redis.call('SET', ack_key, 'reaped', 'EX', ttl)
    redis.call('ZREM', KEYS[1], ack_key)
    redis.call('ZADD', KEYS[2], lease_until, claim)
    claims[#claims + 1] = claim
    reply[#reply + 1] = 1
  end
end
for _, claim in ipairs(claims) do
  reply[#reply + 1] = claim
end
return reply
