
end
-- Replay guard (closing half): keep the reply long enough for any retry to find it.
local __result = __body()
redis.call('SET', __reply_key, cjson.encode(__replay_store(__result)), 'PX', 300000)
return __result
