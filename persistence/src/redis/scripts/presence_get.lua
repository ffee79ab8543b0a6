-- Presence of users. KEYS: per user, its sessions zset then its last_seen key.
-- Returns per user {live sessions, last_seen ms or -1}.
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local answer = {}
for i = 1, #KEYS, 2 do
  local live = redis.call('ZCOUNT', KEYS[i], '(' .. now_ms, '+inf')
  local seen = redis.call('GET', KEYS[i + 1])
  answer[#answer + 1] = live
  answer[#answer + 1] = tonumber(seen or '-1')
end
return answer
