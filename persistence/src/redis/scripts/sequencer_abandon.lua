-- A batch that reserved these keys failed: a retry may reserve them again.
-- KEYS[1..n] ack keys; KEYS[n+1] the index of in-flight markers. Each is deleted only while it
-- still holds an in-flight marker (an ack recorded meanwhile stays).
local index = KEYS[#KEYS]
for i = 1, #KEYS - 1 do
  local value = redis.call('GET', KEYS[i])
  if value and string.sub(value, 1, 9) == 'in-flight' then
    redis.call('DEL', KEYS[i])
    redis.call('ZREM', index, KEYS[i])
  end
end
return 0
