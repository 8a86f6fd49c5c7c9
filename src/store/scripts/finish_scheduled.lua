-- finish_scheduled: KEYS[1] sched zset, KEYS[2] payload hash, KEYS[3] lease hash;
-- ARGV pairs of id, lease token. Only the current lease removes an entry: a lapsed claim or
-- one whose entry was rescheduled since must not delete the newer work.
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[3], id) == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
  end
end
return 0
