-- mark_submitting: KEYS the job hashes, ARGV the fencing token of each. A job becomes
-- `submitting` right before its first PDU is written, and only under the claim that holds it:
-- 1 if so (or already so under that token), 0 if another claim owns it now (fenced off).
local out = {}
for i, key in ipairs(KEYS) do
  local h = redis.call('HMGET', key, 'st', 'own')
  if h[2] == ARGV[i] and (h[1] == 'claimed' or h[1] == 'submitting') then
    if h[1] == 'claimed' then redis.call('HSET', key, 'st', 'submitting') end
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
