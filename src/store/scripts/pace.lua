-- pace: smooth sending's shared state for several campaigns in one call (store/pacing.rs).
-- KEYS[1] hash `tenant/campaign` -> finish_by set through the admin API (unix ms)
-- KEYS[2] hash `tenant/campaign` -> finish_by proposed by the campaign's first job (unix ms)
-- KEYS[1 + 2i] the pending jobs of campaign i: a sorted set job id -> when first seen (unix ms)
-- KEYS[2 + 2i] the TAT of campaign i's pace (rate_lease.lua's key: µs since the epoch)
-- ARGV[1] now (unix ms), ARGV[2] how long a pending set outlives its last change (ms), then per
-- campaign: field, configured (0/1), offered finish_by (ms, or ''), #add, #remove, #rank, the ids.
-- Returns per campaign: admin finish_by (-1: none), job finish_by (-1), pending count, how far
-- its pace is booked ahead of Redis's TIME (µs, 0 when not), then one rank per id asked (-1:
-- not pending).
local now = tonumber(ARGV[1])
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local keep = tonumber(ARGV[2])
local out = {}
local a = 3
for i = 3, #KEYS, 2 do
  local key = KEYS[i]
  local field = ARGV[a]
  local configured = ARGV[a + 1] == '1'
  local offer = ARGV[a + 2]
  local n_add, n_remove, n_rank = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  a = a + 6
  if offer ~= '' then
    redis.call('HSETNX', KEYS[2], field, offer)
  end
  local admin = redis.call('HGET', KEYS[1], field)
  local proposed = redis.call('HGET', KEYS[2], field)
  local adds = {}
  for j = 0, n_add - 1 do
    adds[#adds + 1] = ARGV[a + j]
  end
  a = a + n_add
  for j = 0, n_remove - 1 do
    redis.call('ZREM', key, ARGV[a + j])
  end
  a = a + n_remove
  if (configured or admin or proposed) and #adds > 0 then
    -- NX: a job keeps the place it was first given; chunks keep the argument list small.
    for j = 1, #adds, 500 do
      local args = {}
      for k = j, math.min(j + 499, #adds) do
        args[#args + 1] = now
        args[#args + 1] = adds[k]
      end
      redis.call('ZADD', key, 'NX', unpack(args))
    end
    redis.call('PEXPIRE', key, keep)
  end
  out[#out + 1] = tonumber(admin or '-1')
  out[#out + 1] = tonumber(proposed or '-1')
  out[#out + 1] = redis.call('ZCARD', key)
  out[#out + 1] = math.max(tonumber(redis.call('GET', KEYS[i + 1]) or '0') - now_us, 0)
  for j = 0, n_rank - 1 do
    out[#out + 1] = redis.call('ZRANK', key, ARGV[a + j]) or -1
  end
  a = a + n_rank
end
return out
