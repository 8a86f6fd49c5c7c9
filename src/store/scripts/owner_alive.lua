-- Head of the scripts that judge another owner's claim (redis.rs prepends it). A fencing token
-- is `instance/incarnation/n`; its owner is alive while `alive:{instance}` holds its
-- incarnation (the heartbeat). ARGV is read by the script below; it sets `alive_prefix`.
local alive_prefix
local alive_memo = {}
local function alive(token)
  local known = alive_memo[token]
  if known == nil then
    -- The incarnation and counter hold no '/', the instance id may: split at the last two.
    local inst, inc = string.match(token or '', '^(.*)/([^/]*)/[^/]*$')
    known = inst ~= nil and redis.call('GET', alive_prefix .. inst) == inc
    alive_memo[token] = known
  end
  return known
end
