-- record_events: ARGV[1..2] history/job key prefixes, ARGV[3] TTL (ms), then per report:
-- job id, '1' if final, 'a' if `accepted`, 'd' if `deferred`, else '0', report JSON. Appends to
-- the job's history, marks a job with a final report final, and lifts the hold track_sent.lua
-- put on a job until its `accepted` was out (or schedule.lua's until its `deferred` was). TTLs are set only where a key was created here: an RPUSH that
-- returns 1 made the list; an HSET that adds `st` found no claim (it expired).
local hist_prefix, job_prefix, ttl = ARGV[1], ARGV[2], ARGV[3]
for i = 4, #ARGV, 3 do
  local id = ARGV[i]
  local hist = hist_prefix .. id
  if redis.call('RPUSH', hist, ARGV[i + 2]) == 1 then
    redis.call('PEXPIRE', hist, ttl)
  end
  local kind = ARGV[i + 1]
  if kind == '1' then
    local key = job_prefix .. id
    if redis.call('HSET', key, 'st', 'final') == 1 then
      redis.call('PEXPIRE', key, ttl)
    end
  elseif kind == 'a' then
    redis.call('HDEL', job_prefix .. id, 'hold')
  elseif kind == 'd' then
    redis.call('HDEL', job_prefix .. id, 'dhold')
  end
end
return 0
