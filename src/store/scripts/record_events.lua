-- record_events: KEYS[1] deadlines zset, KEYS[2..4] the scheduled set, its payloads and its
-- leases (schedule.lua). ARGV[1..2] history/job key prefixes, ARGV[3] TTL (ms), ARGV[4] this
-- owner (`instance/incarnation`), ARGV[5] the mappings hash prefix (mappings.lua), then per
-- report: job id (its history), its claim's store id ('' if the job id: a cascade's later step
-- has its own), '1' if a `delivered` final, '2' if another final (its job's mappings that no
-- receipt took go too), 's' if a cascade step's non-final end, 'a' if `accepted`, 'd' if
-- `deferred`, 'D' if a `duplicate` answering a record, else '0', report JSON, and for 's' the
-- next step's store id and when it is due (ms), for 'D' the record
-- (`topic/partition/offset`) and '', else '' twice.
-- A step's end (`step` event) ends its claim as a final does, and parks the next step in the
-- same step: its claim made `deferred` (unheld: its predecessor's report is recorded now) and
-- its entry due in the scheduled set, with the job as read (`cp`, kept by claim.lua on the
-- job's own claim) as payload; the scheduler resumes it like any parked job. Run again (a lost
-- reply, a read-back), it finds the next step's claim there and parks nothing.
-- Appends to the job's history (add_history). A final report marks its claim final and forgets what
-- track_sent.lua / begin_finals.lua wrote for its job (forget_sent.lua, in
-- the same step). `deferred` lifts the hold schedule.lua put on the job's resumption.
-- `accepted` lifts the hold track_sent.lua put on its job's receipts (`hold` counted down: 1 -> 0,
-- at most 0 means recorded); if a receipt decided the job meanwhile (settle_part.lua handed the
-- final over: `ho`, `hold` = -1, decided by this owner), returns
-- that final, {SentJob JSON, outcome, error code, decided at (ms)}, for the caller to publish
-- now, after its `accepted`. Run again after a lost reply it returns it again (until the final
-- is recorded). TTLs are set only where a key was created here: a history SET or APPEND that
-- made it; an HSET that adds `st` found no claim (it expired).
local history_prefix, job_prefix, ttl, me, msgs_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

-- A job's history is one string of report JSON lines (JSON never holds a raw newline). An
-- `accepted`, usually the first event, creates it with its TTL in one command (SET NX PX);
-- anything else appends (the TTL stays), setting the TTL if the append created it. One command
-- per plain job fewer than the list builds before session 10 kept (RPUSH, PEXPIRE, RPUSH),
-- under another key (`hist:`), so that they and this build never meet one key's other type
-- during an upgrade.
local function add_history(key, kind, json)
  if kind == 'a' and redis.call('SET', key, json, 'PX', ttl, 'NX') then return end
  if redis.call('APPEND', key, '\n' .. json) == #json + 1 then
    redis.call('PEXPIRE', key, ttl)
  end
end

local function park_next(job_id, next_id, due)
  local nkey = job_prefix .. next_id
  if redis.call('EXISTS', nkey) == 1 then return end
  local plan = redis.call('HGET', job_prefix .. job_id, 'cp')
  if not plan then
    redis.log(redis.LOG_WARNING, 'sendgate: no cascade plan kept for job ' .. job_id .. '; step ' .. next_id .. ' not parked')
    return
  end
  local keep = string.format('%d', tonumber(due) + tonumber(ttl))
  redis.call('HSET', nkey, 'st', 'deferred', 'own', me .. '/c', 'src', '')
  redis.call('PEXPIREAT', nkey, keep)
  -- The plan must outlive the step parked from it.
  redis.call('PEXPIREAT', job_prefix .. job_id, keep, 'GT')
  redis.call('ZADD', KEYS[2], due, next_id)
  redis.call('HSET', KEYS[3], next_id, '0\n' .. plan)
  redis.call('HDEL', KEYS[4], next_id)
end

local out = {}
for i = 6, #ARGV, 6 do
  local id = ARGV[i]
  local kind = ARGV[i + 2]
  add_history(history_prefix .. id, kind, ARGV[i + 3])
  local sid = ARGV[i + 1]
  if sid == '' then sid = id end
  local key = job_prefix .. sid
  if kind == '1' or kind == '2' or kind == 's' then
    -- A `delivered` job's receipts took all its mappings; any other end may leave some.
    if kind ~= '1' then unmap(msgs_prefix, redis.call('HGET', key, 'm')) end
    if redis.call('HSET', key, 'st', 'final') == 1 then
      redis.call('PEXPIRE', key, ttl)
    end
    forget_fields(key)
    zrem_later(sid)
    if kind == 's' then park_next(id, ARGV[i + 4], ARGV[i + 5]) end
  elseif kind == 'a' and redis.call('HINCRBY', key, 'hold', -1) ~= 0 then
    -- Not the plain 1 -> 0: a receipt decided the job meanwhile and handed its final here
    -- (-1 -> -2: from now on a sweep that takes it over from a dead tracker may publish it as
    -- decided, take_overdue.lua; run again after a lost reply, -3 and on: returned again), or
    -- a plain one run again (0 -> -1), or a job tracked without a hold (a build before holds).
    local h = redis.call('HMGET', key, 'ho', 'fo', 'st', 'j', 'fin', 'fc', 'fa')
    if not h[3] then
      -- No claim here: the count made the hash, which must not stay without a TTL.
      redis.call('HDEL', key, 'hold')
    elseif h[1] and h[2] == me and h[3] ~= 'final' and h[4] then
      out[#out + 1] = { h[4], h[5], h[6] or '', h[7] or '0' }
    end
  elseif kind == 'd' then
    redis.call('HDEL', key, 'dhold')
  elseif kind == 'D' then
    -- The record read again is nothing from now on (claim.lua); only where its decision is
    -- kept, so that no hash is made without a TTL.
    local f = 'd:' .. ARGV[i + 4]
    if redis.call('HEXISTS', key, f) == 1 then redis.call('HSET', key, f, 1) end
  end
end
zflush(KEYS[1])
return out
