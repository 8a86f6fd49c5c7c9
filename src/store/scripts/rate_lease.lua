-- rate_lease: GCRA leases on several rate limits at once (the arithmetic of store/gcra.rs).
-- KEYS[i] a limit's TAT: µs since the epoch of its next free token slot.
-- ARGV per key, 4 each: interval (µs between tokens), tokens wanted, horizon (µs), catch-up
-- tolerance (µs: slots missed at most this long ago are still leased; a TAT further behind than
-- twice it counts as none).
-- Returns per key: granted, first slot (µs from now), next free slot (µs from now), first slot (µs
-- since the epoch, so a caller can tell that a lease continues its last one).
-- Time is Redis's own TIME, so every instance leases on one clock however theirs drift.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i = 1, #KEYS do
  local interval = math.max(tonumber(ARGV[i * 4 - 3]), 1)
  local want = tonumber(ARGV[i * 4 - 2])
  local limit = now + tonumber(ARGV[i * 4 - 1])
  local tol = tonumber(ARGV[i * 4])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tol > 0 and tat > 0 and tat + 2 * tol >= now then
    tat = math.max(tat, now - tol)
  elseif tat < now then
    tat = now
  end
  local granted = 0
  if tat <= limit then
    granted = math.min(want, math.floor((limit - tat) / interval) + 1)
  end
  local first, first_at = tat - now, tat
  if granted > 0 then
    tat = tat + granted * interval
    -- Kept while booked ahead, plus a second and twice the tolerance (what catch-up looks back on).
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.floor(math.max(tat - now, 0) / 1000 + 2 * tol / 1000) + 1000)
  end
  out[#out + 1] = granted
  out[#out + 1] = first
  out[#out + 1] = math.max(tat - now, 0)
  out[#out + 1] = first_at
end
return out
