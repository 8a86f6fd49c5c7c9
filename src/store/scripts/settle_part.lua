-- settle_part: many receipts in one call. KEYS[1] deadlines zset. ARGV[1] job key prefix,
-- ARGV[2] when (ms) to re-emit a final nobody recorded (record_events), ARGV[3] the key prefix
-- of one-key-per-message mappings (older builds'), ARGV[4] now (ms), ARGV[5] this owner
-- (`instance/incarnation`), ARGV[6] the mappings hash prefix (mappings.lua), then per receipt:
-- provider, message id, outcome ('delivered', 'undelivered', ...), the provider's error code ('').
-- Returns per receipt a pair: 'u','' unmatched; 'p','' other parts pending (or the final was
-- decided already); 'f', SentJob JSON: final now; 'h','' final now, handed to the recorder of
-- the job's `accepted` (see decide).
-- The job is not forgotten here: only recording its final report does (record_events.lua),
-- so a crash between this script and the report cannot lose the final.
local job_prefix, confirm_by, msg_prefix, now, me, msgs_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]

-- Marks the job decided (when, by whom: take_overdue.lua hands it to another instance only
-- once its decider is dead, and then with the time to read the reports topic back from) and
-- due for re-emitting until recording its final confirms it.
local function final(key, id, outcome, json)
  redis.call('HSET', key, 'fin', outcome, 'fa', now, 'fo', me)
  zadd_later(confirm_by, id)
  return 'f', json
end

-- The job's state once its last part is in (or one failed): final now, pending, unmatched,
-- or handed off: its `accepted` is not recorded yet (track_sent.lua's `hold` = 1), so the final
-- is decided here but published after that `accepted` by whoever records it (record_events.lua
-- returns it to the tracker: the owner of the claim, `fo`, which the deadline sweep waits for
-- while it lives and reads the reports topic back for if it dies). `hold` = -1 says so in the
-- same write: recording `accepted` counts it down (-2 and below: handed, `accepted` recorded),
-- never to 0, the plain case, however often a lost reply makes it run again; one command where
-- lifting and re-reading a deleted hold took three.
local function decide(key, id, outcome, code)
  local h = redis.call('HMGET', key, 'j', 'fin', 'hold', 'own')
  if not h[1] then
    return 'u', ''
  elseif h[2] then
    return 'p', ''
  elseif h[3] == '1' then
    local tracker = string.match(h[4] or '', '^(.*)/[^/]*$') or me
    redis.call('HSET', key, 'fin', outcome, 'fa', now, 'fo', tracker, 'ho', 1, 'fc', code, 'hold', -1)
    zadd_later(confirm_by, id)
    return 'h', ''
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
-- The last ARGV is the replay guard's reply key.
local ids = take_mappings(7, #ARGV - 1, 4, msgs_prefix, msg_prefix)
for i = 7, #ARGV - 1, 4 do
  local outcome, code = ARGV[i + 2], ARGV[i + 3]
  local id = ids[i]
  local res, json = 'u', ''
  if id then
    local key = job_prefix .. id
    if outcome ~= 'delivered' then
      -- The first part that failed decides the job.
      res, json = decide(key, id, outcome, code)
    else
      -- `left` counts the parts not yet delivered (track_sent.lua): while some are, this
      -- receipt needs no other lookup. Delivered only once every part is.
      local left = redis.call('HINCRBY', key, 'left', -1)
      if left > 0 then
        res = 'p'
      elseif left == 0 then
        res, json = decide(key, id, outcome, code)
      else
        -- No `left`: the job is finished (forget_sent dropped it) or was tracked by an
        -- older version. Undo the field HINCRBY made, so no hash is left without its TTL.
        redis.call('HDEL', key, 'left')
        res, json = settle_counted_up(key, id, outcome)
      end
    end
  end
  -- A final's job, for its stored reply (settle_replay.lua).
  if res == 'f' then __final_ids[#out + 1] = id end
  out[#out + 1] = res
  out[#out + 1] = json
end
zflush(KEYS[1])
return out
