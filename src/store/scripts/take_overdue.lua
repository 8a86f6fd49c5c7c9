-- take_overdue: KEYS[1] deadlines zset. ARGV[1] now (ms), ARGV[2] limit, ARGV[3] sent key
-- prefix, ARGV[4] lease end (ms). Returns SentJob JSON and decided outcome ('' for none: no
-- receipt came) pairs for every job due by now, and leases each until ARGV[4]: it comes back
-- if its final is not confirmed (finish_sent) by then, e.g. because this instance died.
local sent_prefix = ARGV[3]
local out = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(due) do
  local h = redis.call('HMGET', sent_prefix .. id, 'job', 'fin')
  if h[1] then
    redis.call('ZADD', KEYS[1], ARGV[4], id)
    out[#out + 1] = h[1]
    out[#out + 1] = h[2] or ''
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
