-- settle_part: many receipts in one call. KEYS[1] deadlines zset. ARGV[1] job key prefix,
-- ARGV[2] when (ms) to re-emit a final nobody confirmed (finish_sent), ARGV[3] msg key prefix,
-- ARGV[4] now (ms), ARGV[5] this owner (`instance/incarnation`), then per receipt: provider,
-- message id, outcome ('delivered', 'undelivered', ...).
-- Returns per receipt a pair: 'u','' unmatched; 'p','' other parts pending (or the final was
-- decided already); 'f', SentJob JSON: final now; 'e','' it would be final, but the job's
-- `accepted` is not recorded yet (track_sent.lua's hold): nothing changed, try it again.
-- The job is not forgotten here: only finish_sent does that, after its final report is out,
-- so a crash between this script and the report cannot lose the final.
local job_prefix, confirm_by, msg_prefix, now, me = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

-- Marks the job decided (when, by whom: take_overdue.lua hands it to another instance only
-- once its decider is dead, and then with the time to read the reports topic back from) and
-- due for re-emitting until finish_sent confirms its final.
local function final(key, id, outcome, json)
  redis.call('HSET', key, 'fin', outcome, 'fa', now, 'fo', me)
  redis.call('ZADD', KEYS[1], confirm_by, id)
  return 'f', json
end

-- The job's state once its last part is in (or one failed): final now, pending, unmatched,
-- or held (then the part's mapping is put back and its count undone: `undo`).
local function decide(key, id, outcome, undo)
  local h = redis.call('HMGET', key, 'j', 'fin', 'hold')
  if not h[1] then
    return 'u', ''
  elseif h[2] then
    return 'p', ''
  elseif h[3] then
    undo()
    return 'e', ''
  end
  return final(key, id, outcome, h[1])
end

-- A job tracked by an older version counts delivered parts up in `ok` against `n`.
local function settle_counted_up(key, id, outcome)
  local h = redis.call('HMGET', key, 'j', 'n', 'fin')
  if not h[1] then
    return 'u', ''
  elseif h[3] then
    return 'p', ''
  end
  local parts = tonumber(h[2])
  if outcome == 'delivered' and parts ~= nil and redis.call('HINCRBY', key, 'ok', 1) < parts then
    return 'p', ''
  end
  return final(key, id, outcome, h[1])
end

local out = {}
for i = 6, #ARGV - 1, 3 do
  local outcome = ARGV[i + 2]
  -- Each part's mapping is used once: a second receipt for it is unmatched.
  local msg_key = msg_prefix .. ARGV[i] .. ':' .. ARGV[i + 1]
  local id = redis.call('GETDEL', msg_key)
  local code, json = 'u', ''
  if id then
    local key = job_prefix .. id
    local function put_back(counted)
      return function()
        if counted then redis.call('HINCRBY', key, 'left', 1) end
        local ttl = redis.call('PTTL', key)
        redis.call('SET', msg_key, id, 'PX', ttl > 0 and ttl or 60000)
      end
    end
    if outcome ~= 'delivered' then
      -- The first part that failed decides the job.
      code, json = decide(key, id, outcome, put_back(false))
    else
      -- `left` counts the parts not yet delivered (track_sent.lua): while some are, this
      -- receipt needs no other lookup. Delivered only once every part is.
      local left = redis.call('HINCRBY', key, 'left', -1)
      if left > 0 then
        code = 'p'
      elseif left == 0 then
        code, json = decide(key, id, outcome, put_back(true))
      else
        -- No `left`: the job is finished (forget_sent dropped it) or was tracked by an
        -- older version. Undo the field HINCRBY made, so no hash is left without its TTL.
        redis.call('HDEL', key, 'left')
        code, json = settle_counted_up(key, id, outcome)
      end
    end
  end
  out[#out + 1] = code
  out[#out + 1] = json
end
return out
