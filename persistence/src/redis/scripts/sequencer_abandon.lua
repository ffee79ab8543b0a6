-- A batch that reserved these keys failed: a retry may reserve them again.
-- KEYS[1..n] ack keys; each is deleted only while it still holds an in-flight marker (an ack
-- recorded meanwhile stays).
for i = 1, #KEYS do
  local value = redis.call('GET', KEYS[i])
  if value and string.sub(value, 1, 9) == 'in-flight' then
    redis.call('DEL', KEYS[i])
  end
end
return 0
