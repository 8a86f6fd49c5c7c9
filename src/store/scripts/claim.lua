-- claim_ids: one answer per job id, in KEYS order. 0 New, 1 Duplicate, 2 Busy, 3 Orphaned,
-- 4 Replay, 5 DuplicateBusy, and below 0 DuplicateUnsure decided at -answer (ms). KEYS: the job
-- hashes. ARGV[1] claim TTL (ms), ARGV[2] the alive-key prefix (keys.rs), ARGV[3] now (ms),
-- then per job: its fencing token, its source record ('' if none), and for the first step of
-- a cascade the job as read ('' if none): kept as `cp` while the claim is ours, for
-- record_events.lua to park the cascade's later steps from.
-- The hash: `st` claimed | submitting | orphaned | deferred | sent | final, `own` the token
-- of the claim that may act on it, `src` the record (topic/partition/offset) that claimed it.
local ttl, now = ARGV[1], ARGV[3]
alive_prefix = ARGV[2]

-- A second record's `duplicate`, field `d:<record>` of the job's hash: '<token> <decided ms>'
-- from the decision until its event is recorded (record_events.lua, or a read-back that found
-- it), then '1' (a build before this one wrote '1' at the decision). ' u' at the end: taken
-- over from a dead decider, so the event may be in the topic already.
local function second_record(key, tok, src)
  local f = 'd:' .. src
  local m = redis.call('HGET', key, f)
  if not m then
    redis.call('HSET', key, f, tok .. ' ' .. now)
    return 1
  elseif m == '1' then
    -- Its event is out and recorded: the same record read again is nothing.
    return 4
  end
  local owner, at, taken = string.match(m, '^(%S+) (%d+)( ?u?)$')
  if owner == tok then
    -- Asked again under the same token (a retried chain step): the same answer.
    if taken == ' u' then return -tonumber(at) end
    return 1
  elseif owner and alive(owner) then
    return 5
  end
  at = at or now
  redis.call('HSET', key, f, tok .. ' ' .. at .. ' u')
  return -tonumber(at)
end

local out = {}
for i, key in ipairs(KEYS) do
  local tok, src, plan = ARGV[3 * i + 1], ARGV[3 * i + 2], ARGV[3 * i + 3]
  local h = redis.call('HMGET', key, 'st', 'own', 'src')
  local st, own, osrc = h[1], h[2], h[3]
  if not st then
    redis.call('HSET', key, 'st', 'claimed', 'own', tok, 'src', src)
    redis.call('PEXPIRE', key, ttl)
    out[i] = 0
  elseif own == tok then
    -- Our own claim asked again (a chain step retried after a store error): same answer.
    if st == 'claimed' then out[i] = 0 elseif st == 'orphaned' then out[i] = 3 else out[i] = 4 end
  elseif src == '' then
    out[i] = 1
  elseif osrc ~= src then
    -- A second record with a seen id: a duplicate, whatever became of the first (if its
    -- owner died, the first record is read again and taken over through the branch below).
    -- Each such record is remembered, so that reading it again (a crash before its offset was
    -- committed) gives its one `duplicate` event, not a second, and not none.
    out[i] = second_record(key, tok, src)
  elseif st ~= 'claimed' and st ~= 'submitting' and st ~= 'orphaned' then
    -- The same record read again (crash, rebalance) after it reached a durable point: nothing.
    out[i] = 4
  elseif alive(own) then
    -- The same record, still in the hands of a live owner: look again later, silently.
    out[i] = 2
  elseif st == 'claimed' then
    -- Its owner died before anything left the building: safe to do it ourselves.
    redis.call('HSET', key, 'own', tok)
    out[i] = 0
  else
    -- Died mid-submit: the provider may have it. Ours to end `unknown`, never to resend.
    redis.call('HSET', key, 'st', 'orphaned', 'own', tok)
    out[i] = 3
  end
  if plan ~= '' and (out[i] == 0 or out[i] == 3) then
    redis.call('HSET', key, 'cp', plan)
  end
end
return out
