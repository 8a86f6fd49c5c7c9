-- settle_part: KEYS[1] the part's msg key, KEYS[2] deadlines zset. ARGV[1] the part's outcome
-- ('delivered', 'undelivered', ...), ARGV[2..4] sent/msg/job key prefixes, ARGV[5] when (ms)
-- to re-emit the final if nobody confirms it (finish_sent) by then.
-- Returns {'u'} unmatched, {'p'} other parts pending (or final already decided), {'f', SentJob JSON} final.
-- The job is not forgotten here: only finish_sent does that, after its final report is out,
-- so a crash between this script and the report cannot lose the final.
local sent_prefix = ARGV[2]
local id = redis.call('GET', KEYS[1])
if not id then return { 'u' } end
redis.call('DEL', KEYS[1])
local sent = sent_prefix .. id
local h = redis.call('HMGET', sent, 'job', 'n', 'fin')
local json, parts, fin = h[1], tonumber(h[2]), h[3]
if not json then return { 'u' } end
if fin then return { 'p' } end
-- Delivered only once every part is; the first part that failed decides otherwise.
if ARGV[1] == 'delivered' then
  local delivered = redis.call('HINCRBY', sent, 'ok', 1)
  if parts ~= nil and delivered < parts then return { 'p' } end
end
redis.call('HSET', sent, 'fin', ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[5], id)
return { 'f', json }
