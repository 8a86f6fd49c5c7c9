-- take_overdue: KEYS[1] deadlines zset. ARGV[1] now (ms), ARGV[2] limit, ARGV[3] job key
-- prefix, ARGV[4] lease end (ms). Returns SentJob JSON and decided outcome ('' for none: no
-- receipt came) pairs for every job due by now, and leases each until ARGV[4]: it comes back
-- if its final is not confirmed (finish_sent) by then.
-- A decided job whose final report is already recorded (st=final: the instance died between
-- recording and confirming) is forgotten instead of published twice.
local job_prefix = ARGV[3]
local out = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(due) do
  local key = job_prefix .. id
  local h = redis.call('HMGET', key, 'j', 'fin', 'st')
  if not h[1] then
    redis.call('ZREM', KEYS[1], id)
  elseif h[2] and h[3] == 'final' then
    forget_sent(key, id, KEYS[1])
  else
    -- Decided here when no receipt decided it: a receipt arriving while this `unknown` is
    -- being published finds the job decided and makes no second final.
    if not h[2] then redis.call('HSET', key, 'fin', 'unknown') end
    redis.call('ZADD', KEYS[1], ARGV[4], id)
    out[#out + 1] = h[1]
    out[#out + 1] = h[2] or ''
  end
end
return out
