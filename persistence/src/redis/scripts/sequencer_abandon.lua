-- A batch that reserved these keys failed: a retry may reserve them again.
-- KEYS[1..n] ack keys; each is deleted only while it still says "in-flight" (an ack recorded
-- meanwhile stays).
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == 'in-flight' then
    redis.call('DEL', KEYS[i])
  end
end
return 0
