-- take_overdue: KEYS[1] deadlines zset. ARGV[1] now (ms), ARGV[2] limit, ARGV[3] sent key
-- prefix, ARGV[4] lease end (ms), ARGV[5..6] msg/job key prefixes. Returns SentJob JSON and
-- decided outcome ('' for none: no receipt came) pairs for every job due by now, and leases
-- each until ARGV[4]: it comes back if its final is not confirmed (finish_sent) by then.
-- A decided job whose final report is already recorded (job hash st=final: the instance died
-- between publishing and confirming) is forgotten instead of published twice.
local sent_prefix, msg_prefix, job_prefix = ARGV[3], ARGV[5], ARGV[6]
local out = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(due) do
  local h = redis.call('HMGET', sent_prefix .. id, 'job', 'fin')
  if not h[1] then
    redis.call('ZREM', KEYS[1], id)
  elseif h[2] and redis.call('HGET', job_prefix .. id, 'st') == 'final' then
    forget_sent(id, decode(h[1]), sent_prefix, msg_prefix, job_prefix, KEYS[1])
  else
    redis.call('ZADD', KEYS[1], ARGV[4], id)
    out[#out + 1] = h[1]
    out[#out + 1] = h[2] or ''
  end
end
return out
