-- cancel_step: a `read` of a cascade step (`until = "read"`) that came before the next step
-- started wins: the next step is taken out of the scheduled set and the job's final is decided
-- on that step's claim, in one step, so that the scheduler either resumed the step (0: the read
-- is late) or never will (1). KEYS[1] deadlines zset, KEYS[2..4] the scheduled set, its
-- payloads and its leases. ARGV[1] job-key prefix, ARGV[2] now (ms), ARGV[3] when (ms) to
-- re-emit the final if nobody records it, ARGV[4] this owner, then per step: its store id, the
-- final report's JSON. The decided final is kept as begin_finals.lua keeps a pipeline final
-- (`finishing`, `fr`, on the deadline set), so the sweep publishes it if this instance dies.
local job_prefix, now, confirm_by, me = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local out = {}
-- The last ARGV is the replay guard's reply key.
for i = 5, #ARGV - 1, 2 do
  local id, report = ARGV[i], ARGV[i + 1]
  local key = job_prefix .. id
  local st = redis.call('HGET', key, 'st')
  if st == 'deferred' and not redis.call('HGET', KEYS[4], id) then
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    decide_final(key, id, report, now, confirm_by, me)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
zflush(KEYS[1])
return out
