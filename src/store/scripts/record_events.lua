-- record_events: KEYS[1] deadlines zset. ARGV[1..2] history/job key prefixes, ARGV[3] TTL
-- (ms), ARGV[4] this owner (`instance/incarnation`), then per report: job id, '1' if final,
-- 'a' if `accepted`, 'd' if `deferred`, else '0', report JSON.
-- Appends to the job's history. A final report marks its claim final and forgets what
-- track_sent.lua / begin_finals.lua wrote for its job (forget_sent.lua, in
-- the same step). `deferred` lifts the hold schedule.lua put on the job's resumption.
-- `accepted` lifts the hold track_sent.lua put on its job's receipts; if a receipt decided the
-- job meanwhile (settle_part.lua handed the final over: `ho`, decided by this owner), returns
-- that final, {SentJob JSON, outcome, error code, decided at (ms)}, for the caller to publish
-- now, after its `accepted`. Run again after a lost reply it returns it again (until the final
-- is recorded). TTLs are set only where a key was created here: an RPUSH that returns 1 made
-- the list; an HSET that adds `st` found no claim (it expired).
local hist_prefix, job_prefix, ttl, me = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local out = {}
for i = 5, #ARGV, 3 do
  local id = ARGV[i]
  local hist = hist_prefix .. id
  if redis.call('RPUSH', hist, ARGV[i + 2]) == 1 then
    redis.call('PEXPIRE', hist, ttl)
  end
  local kind = ARGV[i + 1]
  local key = job_prefix .. id
  if kind == '1' then
    if redis.call('HSET', key, 'st', 'final') == 1 then
      redis.call('PEXPIRE', key, ttl)
    end
    forget_fields(key)
    zrem_later(id)
  elseif kind == 'a' and redis.call('HDEL', key, 'hold') == 0 then
    local h = redis.call('HMGET', key, 'ho', 'fo', 'st', 'j', 'fin', 'fc', 'fa')
    if h[1] and h[2] == me and h[3] ~= 'final' and h[4] then
      -- `accepted` is recorded now (2): a sweep that takes this final over from a dead
      -- tracker may publish it as decided (take_overdue.lua).
      redis.call('HSET', key, 'ho', 2)
      out[#out + 1] = { h[4], h[5], h[6] or '', h[7] or '0' }
    end
  elseif kind == 'd' then
    redis.call('HDEL', key, 'dhold')
  end
end
zflush(KEYS[1])
return out
