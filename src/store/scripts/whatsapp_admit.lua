-- whatsapp_admit: WhatsApp messaging limits for one batch, in order (Whatsapp::whatsapp_admit).
-- KEYS: one window zset per portfolio (P of them), then per attempt its inbound key and pair key.
-- ARGV[1] now (ms), ARGV[2] customer-service window (ms), ARGV[3] P; then per portfolio:
-- tier (-1: unlimited, nothing counted), window (ms), pair interval (ms, 0: off); then per
-- attempt: portfolio (1-based), recipient, job id.
-- Reply: per attempt a code (0 allow, 1 tier cap, 2 pair limit) and until (ms, 0 on allow),
-- then per portfolio the recipients counted in its window after the batch.
local now_s = ARGV[1]
local now, service, np = tonumber(now_s), tonumber(ARGV[2]), tonumber(ARGV[3])
local function int(n) return string.format('%d', n) end

local tier, window, pair, used, capped = {}, {}, {}, {}, {}
for p = 1, np do
  local a = 3 + (p - 1) * 3
  tier[p], window[p], pair[p] = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  capped[p] = 0
  if tier[p] >= 0 then
    -- Out of the window: counted at or before now - window.
    redis.call('ZREMRANGEBYSCORE', KEYS[p], '-inf', int(now - window[p]))
    used[p] = redis.call('ZCARD', KEYS[p])
  else
    used[p] = 0
  end
end

local out = {}
local base = 3 + np * 3
local n = (#ARGV - base) / 3
for j = 1, n do
  local a = base + (j - 1) * 3
  local p, rcpt, id = tonumber(ARGV[a + 1]), ARGV[a + 2], ARGV[a + 3]
  local inbound_key, pair_key = KEYS[np + 2 * j - 1], KEYS[np + 2 * j]
  local code, untl, counts, seen = 0, 0, false, false
  if tier[p] >= 0 then
    local inbound = tonumber(redis.call('GET', inbound_key))
    if not (inbound and inbound > now - service) then
      seen = redis.call('ZSCORE', KEYS[p], rcpt)
      if not seen and used[p] >= tier[p] then
        -- The k-th capped attempt of the batch waits for the k-th least recently counted
        -- recipient to leave, so a full window does not send them all back at one instant.
        local row = redis.call('ZRANGE', KEYS[p], capped[p], capped[p], 'WITHSCORES')
        if #row == 0 then row = redis.call('ZRANGE', KEYS[p], -1, -1, 'WITHSCORES') end
        capped[p] = capped[p] + 1
        code, untl = 1, (tonumber(row[2]) or now) + window[p]
      else
        counts = true
      end
    end
  end
  if code == 0 and pair[p] > 0 then
    local last = redis.call('GET', pair_key)
    if last then
      local at, by = string.match(last, '^(%-?%d+) (.*)$')
      at = tonumber(at)
      if at and by ~= id and at + pair[p] > now then
        code, untl = 2, at + pair[p]
      end
    end
    if code == 0 then
      -- The TTL only cleans up (a second of slack for clocks); the value decides.
      redis.call('SET', pair_key, now_s .. ' ' .. id, 'PX', int(pair[p] + 1000))
    end
  end
  if code == 0 and counts then
    -- GT: a recipient counted again moves to now (never back, if instances' clocks differ).
    redis.call('ZADD', KEYS[p], 'GT', now_s, rcpt)
    if not seen then used[p] = used[p] + 1 end
  end
  out[#out + 1] = code
  out[#out + 1] = untl
end
for p = 1, np do
  out[#out + 1] = used[p]
end
return out
