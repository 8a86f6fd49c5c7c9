-- schedule: upserts entries of the scheduled set; returns per entry 1 if stored, 0 if fenced.
-- KEYS[1] sched zset, KEYS[2] payload hash, KEYS[3] lease hash.
-- ARGV[1] job-key prefix, ARGV[2] claim TTL (ms), then per entry: member,
-- job id, fencing token, due (ms), flag byte .. source .. '\n' .. payload.
-- Flag '0': the owner parks its job: only under the token that holds its claim (a claim
-- taken over meanwhile is not ours to park), and the claim becomes `deferred`, held (`dhold`)
-- until the parking's `deferred` report is recorded (record_events.lua): claim_due.lua does not
-- resume it before that while its parker lives, so that report never follows the resumed
-- job's final. Flag '1'
-- (recheck): another record of an id someone else holds, parked under a member of its own so
-- that it can never replace the owner's entry.
local job_prefix, ttl = ARGV[1], ARGV[2]
local out = {}
for i = 3, #ARGV, 5 do
  local member, id, tok, due, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local ok = true
  if string.sub(payload, 1, 1) == '0' then
    local key = job_prefix .. id
    local h = redis.call('HMGET', key, 'st', 'own')
    if not h[1] then
      -- No claim left (it expired): made again, with the record the entry carries.
      redis.call('HSET', key, 'st', 'deferred', 'dhold', 1, 'own', tok, 'src', string.match(payload, '^.([^\n]*)\n') or '')
    elseif h[2] == tok and (h[1] == 'claimed' or h[1] == 'submitting') then
      redis.call('HSET', key, 'st', 'deferred', 'dhold', 1)
    elseif h[2] == tok and h[1] == 'deferred' then
      -- Parked under this token already: this call run again after its reply was lost. The
      -- same answer, or its `deferred` is never published and `dhold` never lifted (the
      -- parking would then wait for its parker's death: found by tests/redis_faults.rs).
    else
      ok = false
    end
    -- The claim outlives the deferral by its TTL: a job parked longer than the dedup TTL
    -- must still find its claim when it comes back.
    if ok then
      local at = string.format('%d', tonumber(due) + tonumber(ttl))
      if h[1] then redis.call('PEXPIREAT', key, at, 'GT') else redis.call('PEXPIREAT', key, at) end
    end
  end
  if ok then
    redis.call('ZADD', KEYS[1], due, member)
    redis.call('HSET', KEYS[2], member, payload)
    -- A new entry is unclaimed: whoever holds the old lease can no longer finish it.
    redis.call('HDEL', KEYS[3], member)
  end
  out[#out + 1] = ok and 1 or 0
end
return out
