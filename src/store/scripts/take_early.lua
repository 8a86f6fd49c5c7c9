-- take_early: KEYS[1] the early receipts' index (member `provider:message id`, score when last
-- tried, ms). ARGV[1] tried before this (ms), ARGV[2] limit, ARGV[3] now (ms), ARGV[4] the
-- early key prefix. Returns member, value pairs, each marked tried now; a member whose key has
-- expired (kept long enough: it matched nothing) leaves the index.
local out = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(due) do
  local v = redis.call('GET', ARGV[4] .. m)
  if v then
    redis.call('ZADD', KEYS[1], ARGV[3], m)
    out[#out + 1] = m
    out[#out + 1] = v
  else
    redis.call('ZREM', KEYS[1], m)
  end
end
return out
