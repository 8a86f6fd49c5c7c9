-- settle_part: KEYS[1] the part's msg key, KEYS[2] deadlines zset. ARGV[1] '1' when the part
-- was delivered, ARGV[2..4] sent/msg/job key prefixes.
-- Returns {'u'} unmatched, {'p'} other parts pending, {'f', SentJob JSON} final.
local sent_prefix, msg_prefix, job_prefix = ARGV[2], ARGV[3], ARGV[4]
local id = redis.call('GET', KEYS[1])
if not id then return { 'u' } end
redis.call('DEL', KEYS[1])
local sent = sent_prefix .. id
local h = redis.call('HMGET', sent, 'job', 'n')
local json, parts = h[1], tonumber(h[2])
if not json then return { 'u' } end
-- Delivered only once every part is; the first part that failed decides otherwise.
if ARGV[1] == '1' then
  local delivered = redis.call('HINCRBY', sent, 'ok', 1)
  if parts ~= nil and delivered < parts then return { 'p' } end
end
forget_sent(id, decode(json), sent_prefix, msg_prefix, job_prefix, KEYS[2])
return { 'f', json }
