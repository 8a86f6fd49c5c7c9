-- track_sent: KEYS[1] deadlines zset. ARGV[1..2] job key prefix, mappings hash prefix
-- (mappings.lua), then per job:
-- job id, fencing token, deadline (ms), key TTL (ms), '1' if the claim's TTL may be shorter
-- than that (else it is left alone: one command fewer per job), SentJob JSON, provider, part
-- count, message ids... Returns per job 1 if tracked (or tracked already under this token: a
-- call run again after its reply was lost answers the same), 0 if its claim belongs to another
-- token now (this instance stalled past its heartbeat and the job was taken over: the taker
-- ends it).
-- `hold` stays until the job's `accepted` report is recorded (record_events.lua): a receipt
-- that would make the job final before that waits, so `accepted` always comes first.
-- The job's claim hash takes the SentJob (`j`), its part count (`n`), the parts not yet
-- delivered (`left`, counted down by settle_part.lua) and its mappings (`m`, for unmap): one
-- key per job for claim and receipt state, so a receipt costs one lookup. `n` is for instances of the previous version, which
-- count delivered parts up in `ok` instead: during a rolling upgrade a job whose receipts meet
-- both versions reaches neither count and ends `unknown` at its deadline (one final still).
local job_prefix, msgs_prefix = ARGV[1], ARGV[2]
local out = {}
local i = 3
while i <= #ARGV do
  local id, tok, deadline, px, extend, json, provider, n =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], tonumber(ARGV[i + 7])
  local key = job_prefix .. id
  local h = redis.call('HMGET', key, 'st', 'own')
  if h[1] == 'sent' and h[2] == tok then
    out[#out + 1] = 1
  -- No claim at all (it expired): nobody else can hold it, so the answer is still ours.
  elseif not h[1] or (h[2] == tok and (h[1] == 'submitting' or h[1] == 'claimed')) then
    for k = 1, n do
      map_later(provider, ARGV[i + 7 + k], id)
    end
    local m = mapping_list(provider, i + 8, i + 7 + n)
    if not h[1] then
      redis.call('HSET', key, 'st', 'sent', 'own', tok, 'j', json, 'n', n, 'left', n, 'hold', 1, 'm', m)
      -- A hash made here has no TTL yet, which GT would treat as infinite.
      redis.call('PEXPIRE', key, px)
    else
      redis.call('HSET', key, 'st', 'sent', 'j', json, 'n', n, 'left', n, 'hold', 1, 'm', m)
      -- Kept at least until the receipt deadline plus slack; a longer dedup TTL stays (GT).
      if extend == '1' then redis.call('PEXPIRE', key, px, 'GT') end
    end
    zadd_later(deadline, id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
  i = i + 8 + n
end
map_flush(msgs_prefix)
zflush(KEYS[1])
return out
