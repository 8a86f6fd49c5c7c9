-- record_inbound: customer-service windows opened by recipients' messages.
-- KEYS: the inbound keys (keys.rs `wa_inbound`). ARGV[1] key TTL (ms), then per key: the
-- message's time (ms). A key only moves forward: a late webhook for an older message
-- cannot shorten a window a newer one opened.
local ttl = ARGV[1]
for i, key in ipairs(KEYS) do
  local at = tonumber(ARGV[i + 1])
  local cur = tonumber(redis.call('GET', key))
  if not cur or cur < at then
    redis.call('SET', key, ARGV[i + 1], 'PX', ttl)
  end
end
return 0
