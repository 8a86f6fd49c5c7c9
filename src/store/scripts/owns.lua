-- owns: KEYS the job hashes, ARGV the fencing token of each. 1 where that token still holds
-- the job and it is not final yet: checked right before a pipeline final is published, so an
-- instance that lost a job (it stalled past its heartbeat) does not end it a second time.
local out = {}
for i, key in ipairs(KEYS) do
  local h = redis.call('HMGET', key, 'st', 'own')
  out[i] = (h[2] == ARGV[i] and h[1] ~= 'final') and 1 or 0
end
return out
