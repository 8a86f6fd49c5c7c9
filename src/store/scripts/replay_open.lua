-- Replay guard (opening half): the last ARGV is this call's reply key. A call whose reply was
-- lost (Redis went away after running it) is sent again with the same key and gets the stored
-- reply instead of running twice: settle_part or take_overdue running twice would lose a job.
local __reply_key = ARGV[#ARGV]
local __cached = redis.call('GET', __reply_key)
if __cached then return cjson.decode(__cached) end
local function __body()
