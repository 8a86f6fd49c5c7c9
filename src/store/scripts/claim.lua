-- claim_ids: one answer per job id, in KEYS order. 0 New, 1 Duplicate, 2 Busy, 3 Orphaned.
-- KEYS: the job hashes. ARGV[1] this owner ("instance/incarnation"), ARGV[2] claim TTL (ms),
-- ARGV[3] the alive-key prefix (keys.rs).
local me, ttl, alive_prefix = ARGV[1], ARGV[2], ARGV[3]

-- A batch mostly meets the same few owners: look each one's heartbeat up once.
local alive_memo = {}
local function alive(owner)
  local known = alive_memo[owner]
  if known == nil then
    -- The incarnation has no '/', the instance id may: split at the last one.
    local inst, inc = string.match(owner, '^(.*)/([^/]*)$')
    known = inst ~= nil and redis.call('GET', alive_prefix .. inst) == inc
    alive_memo[owner] = known
  end
  return known
end

local out = {}
for i, key in ipairs(KEYS) do
  local h = redis.call('HMGET', key, 'st', 'own')
  local st, own = h[1], h[2]
  if not st then
    redis.call('HSET', key, 'st', 'claimed', 'own', me)
    redis.call('PEXPIRE', key, ttl)
    out[i] = 0
  elseif st ~= 'claimed' and st ~= 'submitting' then
    -- deferred, sent, final (or anything unknown): handled already, never sent twice.
    out[i] = 1
  elseif own == me then
    -- Also the second copy of an id within this very batch.
    out[i] = 1
  elseif alive(own) then
    out[i] = 2
  elseif st == 'claimed' then
    -- Its owner died before anything left the building: safe to do it ourselves.
    redis.call('HSET', key, 'own', me)
    redis.call('PEXPIRE', key, ttl)
    out[i] = 0
  else
    -- Died mid-submit: the provider may have it. Keep it claimed (by a live owner) so other
    -- instances see Busy, then Duplicate once its `unknown` report marks it final.
    redis.call('HSET', key, 'st', 'claimed', 'own', me)
    redis.call('PEXPIRE', key, ttl)
    out[i] = 3
  end
end
return out
