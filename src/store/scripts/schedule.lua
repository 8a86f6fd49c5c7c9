-- schedule: upserts entries of the scheduled set.
-- KEYS[1] sched zset, KEYS[2] payload hash, KEYS[3] lease hash.
-- ARGV[1] this owner, ARGV[2] job-key prefix, then per job: id, due (ms), flag byte .. payload.
local me, job_prefix = ARGV[1], ARGV[2]
for i = 3, #ARGV, 3 do
  local id, due, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  redis.call('ZADD', KEYS[1], due, id)
  redis.call('HSET', KEYS[2], id, payload)
  -- A new entry is unclaimed: whoever holds the old lease can no longer finish it.
  redis.call('HDEL', KEYS[3], id)
  -- Flag '0': the job is ours and now parked, so a duplicate arriving meanwhile is a
  -- duplicate and an instance death does not orphan it (the lease brings it back).
  -- Flag '1' (recheck): another instance owns its claim; leave it alone.
  if string.sub(payload, 1, 1) == '0' then
    local key = job_prefix .. id
    if redis.call('EXISTS', key) == 1 then
      redis.call('HSET', key, 'st', 'deferred', 'own', me)
    end
  end
end
return 0
