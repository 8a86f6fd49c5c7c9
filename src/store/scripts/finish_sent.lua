-- finish_sent: KEYS[1] deadlines zset. ARGV[1..3] sent/msg/job key prefixes, then job ids
-- whose final report is out: forget everything track_sent wrote and mark the claim final.
local sent_prefix, msg_prefix, job_prefix = ARGV[1], ARGV[2], ARGV[3]
for i = 4, #ARGV do
  local id = ARGV[i]
  local json = redis.call('HGET', sent_prefix .. id, 'job')
  local job = nil
  if json then job = decode(json) end
  forget_sent(id, job, sent_prefix, msg_prefix, job_prefix, KEYS[1])
end
return 0
