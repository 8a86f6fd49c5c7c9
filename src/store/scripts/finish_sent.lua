-- finish_sent: KEYS[1] deadlines zset. ARGV[1] job key prefix, then job ids whose final
-- report is out: forget what track_sent wrote and mark the claim final.
local job_prefix = ARGV[1]
for i = 2, #ARGV do
  forget_fields(job_prefix .. ARGV[i])
  zrem_later(ARGV[i])
end
zflush(KEYS[1])
return 0
