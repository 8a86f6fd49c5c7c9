-- track_sent: KEYS[1] deadlines zset. ARGV[1..2] job/msg key prefixes, then per job:
-- job id, deadline (ms), key TTL (ms), SentJob JSON, provider, part count, message ids...
-- The job's claim hash takes the SentJob (`j`), its part count (`n`) and the parts not yet
-- delivered (`left`, counted down by settle_part.lua): one key per job for claim and receipt
-- state, so a receipt costs one lookup. `n` is for instances of the previous version, which
-- count delivered parts up in `ok` instead: during a rolling upgrade a job whose receipts meet
-- both versions reaches neither count and ends `unknown` at its deadline (one final still).
local job_prefix, msg_prefix = ARGV[1], ARGV[2]
local i = 3
while i <= #ARGV do
  local id, deadline, px, json, provider, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5])
  for k = 1, n do
    redis.call('SET', msg_prefix .. provider .. ':' .. ARGV[i + 5 + k], id, 'PX', px)
  end
  local key = job_prefix .. id
  local added = redis.call('HSET', key, 'st', 'sent', 'j', json, 'n', n, 'left', n)
  -- Kept at least until the receipt deadline plus slack; a longer dedup TTL stays (GT).
  -- All four fields new: the claim had expired and this hash has no TTL yet, which GT
  -- would treat as infinite.
  if added == 4 then
    redis.call('PEXPIRE', key, px)
  else
    redis.call('PEXPIRE', key, px, 'GT')
  end
  redis.call('ZADD', KEYS[1], deadline, id)
  i = i + 6 + n
end
return 0
