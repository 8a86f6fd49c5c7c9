-- settle_part: many receipts in one call. KEYS[1] deadlines zset. ARGV[1] job key prefix,
-- ARGV[2] when (ms) to re-emit a final nobody confirmed (finish_sent), ARGV[3] msg key prefix,
-- then per receipt: provider, message id, outcome ('delivered', 'undelivered', ...).
-- Returns per receipt a pair: 'u','' unmatched; 'p','' other parts pending (or the final was
-- decided already); 'f', SentJob JSON: final now.
-- The job is not forgotten here: only finish_sent does that, after its final report is out,
-- so a crash between this script and the report cannot lose the final.
local job_prefix, confirm_by, msg_prefix = ARGV[1], ARGV[2], ARGV[3]
local out = {}
for i = 4, #ARGV - 1, 3 do
  local outcome = ARGV[i + 2]
  -- Each part's mapping is used once: a second receipt for it is unmatched.
  local id = redis.call('GETDEL', msg_prefix .. ARGV[i] .. ':' .. ARGV[i + 1])
  local code, json = 'u', ''
  if id then
    local key = job_prefix .. id
    local h = redis.call('HMGET', key, 'j', 'n', 'fin')
    local parts = tonumber(h[2])
    if h[1] and h[3] then
      code = 'p'
    elseif h[1] then
      -- Delivered only once every part is; the first part that failed decides otherwise.
      local pending = false
      if outcome == 'delivered' then
        pending = parts ~= nil and redis.call('HINCRBY', key, 'ok', 1) < parts
      end
      if pending then
        code = 'p'
      else
        redis.call('HSET', key, 'fin', outcome)
        redis.call('ZADD', KEYS[1], confirm_by, id)
        code, json = 'f', h[1]
      end
    end
  end
  out[#out + 1] = code
  out[#out + 1] = json
end
return out
