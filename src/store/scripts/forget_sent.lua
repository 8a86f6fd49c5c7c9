-- Head of record_events.lua and take_overdue.lua (redis.rs prepends it):
-- drops what track_sent.lua, settle_part.lua and begin_finals.lua wrote for one job whose final
-- is recorded (its claim is marked final by record_events.lua). Mappings of parts whose
-- receipt never came go with a final that is not `delivered` (unmap, mappings.lua): the
-- caller drops them first, while `m` still names them.
local function forget_fields(key)
  redis.call('HDEL', key, 'j', 'n', 'left', 'ok', 'fin', 'fa', 'fo', 'fr', 'hold', 'ho', 'fc', 'dhold', 'm')
end
local function forget_sent(key, id, deadlines)
  forget_fields(key)
  redis.call('ZREM', deadlines, id)
end
