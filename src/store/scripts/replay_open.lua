-- Replay guard (opening half): the last ARGV is this call's reply key. A call whose reply was
-- lost (Redis went away after running it) is sent again with the same key and gets the stored
-- reply instead of running twice: settle_part or take_overdue running twice would lose a job.
-- A head before this one defines how the reply is stored and given back (replay_plain.lua,
-- settle_replay.lua).
local __reply_key = ARGV[#ARGV]
local __cached = redis.call('GET', __reply_key)
if __cached then return __replay_load(cjson.decode(__cached)) end
local function __body()
