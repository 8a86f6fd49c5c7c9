-- Head of begin_finals.lua and cancel_step.lua (redis.rs prepends it, after zbatch.lua): a
-- final decided outside the receipt path is kept on its claim (`finishing`, the report as
-- `fr`, decided when and by whom) and put on the deadline set, so that the sweep publishes it
-- (after reading the reports topic back) if the decider dies before recording it.
local function decide_final(key, id, report, now, confirm_by, me)
  redis.call('HSET', key, 'st', 'finishing', 'fin', 'pipeline', 'fa', now, 'fo', me, 'fr', report)
  zadd_later(confirm_by, id)
end
