-- Head of finish_sent.lua and take_overdue.lua (redis.rs prepends it): drops what
-- track_sent.lua wrote for one job. Its claim is marked final by record_events.lua when the
-- final report is recorded, which comes first. Mappings of parts whose receipt never came
-- expire with their TTL (deleting them would mean decoding the SentJob).
local function forget_sent(key, id, deadlines)
  redis.call('HDEL', key, 'j', 'n', 'left', 'ok', 'fin', 'fa', 'fo', 'fr', 'hold')
  redis.call('ZREM', deadlines, id)
end
