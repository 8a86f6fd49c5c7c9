-- track_sent: KEYS[1] deadlines zset. ARGV[1..3] job/sent/msg key prefixes, then per job:
-- job id, deadline (ms), key TTL (ms), SentJob JSON, provider, part count, message ids...
local job_prefix, sent_prefix, msg_prefix = ARGV[1], ARGV[2], ARGV[3]
local i = 4
while i <= #ARGV do
  local id, deadline, px, json, provider, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5])
  for k = 1, n do
    redis.call('SET', msg_prefix .. provider .. ':' .. ARGV[i + 5 + k], id, 'PX', px)
  end
  local sent = sent_prefix .. id
  redis.call('DEL', sent)
  redis.call('HSET', sent, 'job', json, 'n', n, 'ok', 0)
  redis.call('PEXPIRE', sent, px)
  redis.call('ZADD', KEYS[1], deadline, id)
  local key = job_prefix .. id
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'st', 'sent')
  end
  i = i + 6 + n
end
return 0
