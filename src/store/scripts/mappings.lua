-- Head of the scripts that keep, take or drop receipt mappings (redis.rs prepends it): message
-- id -> job id, one hash per provider (`msgs:<provider>`, Keys::msgs_prefix), written and read for a
-- whole batch in one command per provider. One key per message (`msg:<provider>:<id>`, the
-- builds before) cost a SET per part when tracked and a GETDEL per receipt: four of the twenty
-- Redis commands of a two-part job. Hash fields have no TTL here (Redis 7.0): a mapping goes
-- when its receipt takes it, or with its job's final when that final is not `delivered` (the
-- job's `m` field, written with its mappings, names its provider and message ids: unmap).
local __maps = {}

-- One command over a long list of arguments, in chunks (Lua's unpack is bounded).
local function chunked(cmd, key, list)
  for i = 1, #list, 1000 do
    redis.call(cmd, key, unpack(list, i, math.min(i + 999, #list)))
  end
end

local function map_later(provider, mid, id)
  local t = __maps[provider]
  if not t then
    t = {}
    __maps[provider] = t
  end
  t[#t + 1] = mid
  t[#t + 1] = id
end

local function map_flush(msgs_prefix)
  for provider, t in pairs(__maps) do
    chunked('HSET', msgs_prefix .. provider, t)
  end
  __maps = {}
end

-- What track_sent.lua keeps as the job's `m`: its provider, then its message ids.
local function mapping_list(provider, first, last)
  return provider .. '\n' .. table.concat(ARGV, '\n', first, last)
end

-- Drops the mappings a job's `m` lists (those its receipts took are gone already: no-ops).
local function unmap(msgs_prefix, m)
  if not m then return end
  local ids = {}
  for s in string.gmatch(m, '[^\n]+') do ids[#ids + 1] = s end
  local provider = table.remove(ids, 1)
  chunked('HDEL', msgs_prefix .. provider, ids)
end

-- Takes the mappings of a batch of receipts: ARGV from `first` to `last` in strides of
-- `stride`, each starting with provider and message id. Returns their job ids by ARGV index
-- (absent: unmatched). Each mapping is used once: a second receipt for a message, in this
-- call or later, matches nothing. A message tracked by a build before the hash has its own
-- key, looked for when the hash has no entry.
local function take_mappings(first, last, stride, msgs_prefix, msg_prefix)
  local wanted = {}
  for i = first, last, stride do
    local provider, mid = ARGV[i], ARGV[i + 1]
    local w = wanted[provider]
    if not w then
      w = { mids = {}, at = {}, seen = {} }
      wanted[provider] = w
    end
    if not w.seen[mid] then
      w.seen[mid] = true
      w.mids[#w.mids + 1] = mid
      w.at[#w.at + 1] = i
    end
  end
  local ids = {}
  for provider, w in pairs(wanted) do
    local key = msgs_prefix .. provider
    local taken = {}
    for c = 1, #w.mids, 1000 do
      local got = redis.call('HMGET', key, unpack(w.mids, c, math.min(c + 999, #w.mids)))
      for k = 1, #got do
        local n = c + k - 1
        local id = got[k]
        if id then
          taken[#taken + 1] = w.mids[n]
        else
          id = redis.call('GETDEL', msg_prefix .. provider .. ':' .. w.mids[n])
        end
        if id then ids[w.at[n]] = id end
      end
    end
    chunked('HDEL', key, taken)
  end
  return ids
end
