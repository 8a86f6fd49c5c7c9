-- claim_due: leases up to ARGV[2] entries due by ARGV[1] (ms) until ARGV[3] (ms).
-- KEYS[1] sched zset, KEYS[2] payload hash, KEYS[3] lease hash, KEYS[4] lease counter.
-- Returns {id, flag byte .. payload, lease token} per claimed entry.
local out = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(due) do
  local payload = redis.call('HGET', KEYS[2], id)
  if not payload then
    -- An index entry without a job cannot be run; drop it rather than meet it forever.
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[3], id)
  else
    local token = redis.call('INCR', KEYS[4])
    redis.call('HSET', KEYS[3], id, token)
    -- Due again when the lease ends: if the claimer dies, someone else runs it.
    redis.call('ZADD', KEYS[1], ARGV[3], id)
    out[#out + 1] = { id, payload, token }
  end
end
return out
