-- take_overdue: KEYS[1] deadlines zset. ARGV[1] now (ms), ARGV[2] limit, ARGV[3] job key
-- prefix, ARGV[4] lease end (ms), ARGV[5] alive-key prefix, ARGV[6] this owner, ARGV[7] the
-- mappings hash prefix (mappings.lua). For every job
-- due by now returns four strings: SentJob JSON ('' for a final decided in the pipeline),
-- decided outcome ('' for none: no receipt came), the pipeline final's report JSON (''), and
-- when its dead decider decided it (ms; '' if it was not decided, so never published). Each is
-- leased until ARGV[4]: it comes back if its final is not recorded (record_events) by then.
-- A decided job whose decider is alive is its decider's to publish: leased again, not handed
-- out (a slow broker must not make two instances publish one final). One whose final report
-- is recorded already (st=final) is forgotten instead of published twice. An undecided job
-- whose `accepted` is not recorded yet (track_sent.lua's `hold` = 1) is its tracker's while the
-- tracker lives: leased again, not decided, so that the `unknown` can never be published
-- before that `accepted`. A dead tracker's unrecorded `accepted` is never published (or was
-- published before it died): then the job is decided here as any other. A receipt's final
-- handed to a tracker that died before recording its `accepted` (`hold` = -1, settle_part.lua)
-- becomes `unknown`: the `accepted` may never have been published, and a `delivered` must
-- not come without it.
local job_prefix, now, me = ARGV[3], ARGV[1], ARGV[6]
alive_prefix = ARGV[5]
local out = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[2])
for _, id in ipairs(due) do
  local key = job_prefix .. id
  local h = redis.call('HMGET', key, 'j', 'fin', 'st', 'fo', 'fa', 'fr', 'hold', 'own', 'ho', 'm')
  local j, fin, st, fo, fa, fr, hold, own, ho = h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]
  if not j and not fr then
    redis.call('ZREM', KEYS[1], id)
  elseif fin and st == 'final' then
    unmap(ARGV[7], h[10])
    forget_sent(key, id, KEYS[1])
  elseif fin and fo and (fo == me or alive(fo .. '/0')) then
    -- Its decider lives (a slow broker, a long outage): still its own to publish and confirm.
    redis.call('ZADD', KEYS[1], ARGV[4], id)
  elseif fin then
    -- Decided by an instance that died (or by this instance id before a restart): it may be
    -- in the topic already. Ours now; the caller reads the topic back before publishing.
    -- Handed over and its `accepted` not recorded: `hold` = -1 (settle_part.lua); a build
    -- before the count deleted `hold` and marked a recorded one `ho` = 2.
    if ho == '1' and (hold == '-1' or not hold) then fin = 'unknown' end
    redis.call('HSET', key, 'fo', me, 'fin', fin)
    redis.call('ZADD', KEYS[1], ARGV[4], id)
    out[#out + 1] = j or ''
    out[#out + 1] = fin
    out[#out + 1] = fr or ''
    out[#out + 1] = fa or '0'
  elseif hold == '1' and (string.match(own or '', '^(.*)/[^/]*$') == me or alive(own)) then
    -- Its `accepted` is still on its way to the broker, in its tracker's hands: back later.
    redis.call('ZADD', KEYS[1], ARGV[4], id)
  else
    -- Decided here: a receipt arriving while this `unknown` is being published finds the job
    -- decided and makes no second final.
    redis.call('HSET', key, 'fin', 'unknown', 'fa', now, 'fo', me)
    redis.call('ZADD', KEYS[1], ARGV[4], id)
    out[#out + 1] = j
    out[#out + 1] = ''
    out[#out + 1] = ''
    out[#out + 1] = ''
  end
end
return out
