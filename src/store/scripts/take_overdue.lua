-- take_overdue: KEYS[1] deadlines zset. ARGV[1] now (ms), ARGV[2] limit, ARGV[3..5]
-- sent/msg/job key prefixes. Removes and returns the SentJob JSON of every job due by now.
local sent_prefix, msg_prefix, job_prefix = ARGV[3], ARGV[4], ARGV[5]
local out = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(due) do
  local json = redis.call('HGET', sent_prefix .. id, 'job')
  local job = nil
  if json then job = decode(json) end
  forget_sent(id, job, sent_prefix, msg_prefix, job_prefix, KEYS[1])
  if json then out[#out + 1] = json end
end
return out
