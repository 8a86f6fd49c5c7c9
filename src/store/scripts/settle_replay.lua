-- Replay hooks of settle_part.lua: a final's stored reply keeps its job id instead of its
-- SentJob JSON, and a replay reads the JSON back from the job's hash. Stored whole, every
-- settle call's reply (a SentJob per final, ~300 bytes each) was written to Redis's memory and
-- AOF and kept five minutes for a retry that almost never comes. Read back, it is the same
-- answer: `j` stays until the final is recorded (record_events.lua); if it is gone, the final
-- was published and recorded since (by another instance's deadline sweep, which takes a
-- decided final over once its decider is taken for dead: take_overdue.lua) and the replay
-- says pending ('p'): nothing more to publish.
local __final_ids = {}
local function __replay_store(r)
  local c = {}
  for i = 1, #r, 2 do
    c[i] = r[i]
    if r[i] == 'f' then c[i + 1] = __final_ids[i] else c[i + 1] = r[i + 1] end
  end
  return c
end
local function __replay_load(c)
  for i = 1, #c, 2 do
    if c[i] == 'f' then
      local j = redis.call('HGET', ARGV[1] .. c[i + 1], 'j')
      if j then c[i + 1] = j else c[i], c[i + 1] = 'p', '' end
    end
  end
  return c
end
