-- begin_finals: finals decided in the pipeline (rejected, suppressed, expired, failed, an
-- orphan's unknown), recorded before they are published. KEYS[1] deadlines zset, then the job
-- hashes. ARGV[1] now (ms), ARGV[2] when (ms) to re-emit one nobody confirmed, ARGV[3] this
-- owner, then per job: its id, its fencing token, its final report's JSON.
-- Per job 1 if the token still holds the job: it becomes `finishing`, decided and due on the
-- deadline sweep until recording the final confirms it, like a receipt's final (the sweep reads the
-- reports topic back if its decider dies). 0 if another claim holds it now, or it is decided
-- already: fenced off, not to be published.
local now, confirm_by, me = ARGV[1], ARGV[2], ARGV[3]
local out = {}
for i = 2, #KEYS do
  local key = KEYS[i]
  local a = 4 + 3 * (i - 2)
  local id, tok, report = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local h = redis.call('HMGET', key, 'st', 'own')
  if h[2] == tok and h[1] ~= 'final' and h[1] ~= 'finishing' then
    decide_final(key, id, report, now, confirm_by, me)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
zflush(KEYS[1])
return out
