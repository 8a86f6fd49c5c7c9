-- claim_ids: one answer per job id, in KEYS order. 0 New, 1 Duplicate, 2 Busy, 3 Orphaned,
-- 4 Replay. KEYS: the job hashes. ARGV[1] claim TTL (ms), ARGV[2] the alive-key prefix
-- (keys.rs), then per job: its fencing token, its source record ('' if none), and for the
-- first step of a cascade the job as read ('' if none): kept as `cp` while the claim is ours,
-- for record_events.lua to park the cascade's later steps from.
-- The hash: `st` claimed | submitting | orphaned | deferred | sent | final, `own` the token
-- of the claim that may act on it, `src` the record (topic/partition/offset) that claimed it.
local ttl = ARGV[1]
alive_prefix = ARGV[2]

local out = {}
for i, key in ipairs(KEYS) do
  local tok, src, plan = ARGV[3 * i], ARGV[3 * i + 1], ARGV[3 * i + 2]
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
    -- committed) is nothing rather than a second `duplicate`.
    if redis.call('HSETNX', key, 'd:' .. src, 1) == 1 then out[i] = 1 else out[i] = 4 end
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
