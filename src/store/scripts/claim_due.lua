-- claim_due: leases up to ARGV[2] entries due by ARGV[1] (ms) until ARGV[3] (ms).
-- KEYS[1] sched zset, KEYS[2] payload hash, KEYS[3] lease hash, KEYS[4] lease counter.
-- ARGV[4] job-key prefix, ARGV[5] alive-key prefix, ARGV[6] this owner (`instance/incarnation`),
-- ARGV[7] claim TTL (ms) for a parked job whose claim is gone, ARGV[8] when (ms) to look again
-- at a held parking.
-- Returns {member, flagged payload, lease, token, kind} per entry to run: kind 'r' an owner's
-- parked job, now claimed under `token`; 'c' a recheck (claimed like a new record); 'o' a job
-- whose owner died mid-submit, to end `unknown` under `token`.
-- An owner's entry moves its claim in this same step: a lease that lapses while its holder
-- still runs (stalled, or slow) gives the next claimer a new token, which fences the first.
-- A parking whose `deferred` report is not recorded yet (schedule.lua's `dhold`) stays its
-- parker's while the parker lives: not resumed, due again at ARGV[8], unleased. A dead
-- parker's unrecorded `deferred` is never published (or was published before it died).
local job_prefix, me = ARGV[4], ARGV[6]
alive_prefix = ARGV[5]
local out = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local payload = redis.call('HGET', KEYS[2], member)
  local run, kind, tok = false, 'c', ''
  if not payload then
    -- An index entry without a job cannot be run; drop it rather than meet it forever.
    redis.call('ZREM', KEYS[1], member)
    redis.call('HDEL', KEYS[3], member)
  else
    local lease = redis.call('INCR', KEYS[4])
    if string.sub(payload, 1, 1) == '1' then
      run = true
    else
      local key = job_prefix .. member
      local h = redis.call('HMGET', key, 'st', 'own', 'dhold')
      local st, own, dhold = h[1], h[2], h[3]
      tok = me .. '/s' .. lease
      if st == 'deferred' and dhold and (string.match(own or '', '^(.*)/[^/]*$') == me or alive(own)) then
        -- Its `deferred` is still on its way to the broker, in its parker's hands.
        redis.call('ZADD', KEYS[1], ARGV[8], member)
        payload = nil
      elseif not st or st == 'deferred' or (st == 'claimed' and not alive(own)) then
        redis.call('HSET', key, 'st', 'claimed', 'own', tok)
        if dhold then redis.call('HDEL', key, 'dhold') end
        if not st then
          -- No claim left (it expired): made again, with the record the entry carries.
          redis.call('HSET', key, 'src', string.match(payload, '^.([^\n]*)\n') or '')
          redis.call('PEXPIRE', key, ARGV[7])
        end
        run, kind = true, 'r'
      elseif (st == 'submitting' or st == 'orphaned') and not alive(own) then
        redis.call('HSET', key, 'st', 'orphaned', 'own', tok)
        run, kind = true, 'o'
      elseif st == 'claimed' or st == 'submitting' or st == 'orphaned' then
        -- A live claimer is on it: leased again below, back when that lease lapses (by then
        -- its claimer finished it, or died).
      else
        -- Sent or final: nothing left to run.
        redis.call('ZREM', KEYS[1], member)
        redis.call('HDEL', KEYS[2], member)
        redis.call('HDEL', KEYS[3], member)
        payload = nil
      end
    end
    if payload then
      redis.call('HSET', KEYS[3], member, lease)
      -- Due again when the lease ends: if the claimer dies, someone else runs it.
      redis.call('ZADD', KEYS[1], ARGV[3], member)
      if run then
        out[#out + 1] = { member, payload, lease, tok, kind }
      end
    end
  end
end
return out
