-- Head of the hot-path scripts (redis.rs prepends it): their sorted-set writes for a whole
-- batch of jobs go in one ZADD / ZREM at the end of the call (zflush) instead of one command
-- per job, which was a tenth of the Redis commands per job. Chunked, as Lua's unpack is bounded.
local zadds, zrems = {}, {}
local function zadd_later(score, member)
  zadds[#zadds + 1] = score
  zadds[#zadds + 1] = member
end
local function zrem_later(member)
  zrems[#zrems + 1] = member
end
local function zflush(key)
  for i = 1, #zadds, 1000 do
    redis.call('ZADD', key, unpack(zadds, i, math.min(i + 999, #zadds)))
  end
  for i = 1, #zrems, 1000 do
    redis.call('ZREM', key, unpack(zrems, i, math.min(i + 999, #zrems)))
  end
  zadds, zrems = {}, {}
end
