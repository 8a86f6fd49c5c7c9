-- Head of finish_sent.lua and take_overdue.lua (redis.rs prepends it): drops what
-- track_sent.lua wrote for one job and marks its claim final. `job` is the decoded SentJob
-- (nil when its entry is gone or unreadable: the per-part keys then expire on their own).
local function forget_sent(id, job, sent_prefix, msg_prefix, job_prefix, deadlines)
  if type(job) == 'table' and type(job.message_ids) == 'table' and type(job.provider) == 'string' then
    for _, mid in ipairs(job.message_ids) do
      redis.call('DEL', msg_prefix .. job.provider .. ':' .. tostring(mid))
    end
  end
  redis.call('DEL', sent_prefix .. id)
  redis.call('ZREM', deadlines, id)
  local key = job_prefix .. id
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'st', 'final')
  end
end

-- Decodes before any write: a script error does not undo writes already made.
local function decode(json)
  local ok, job = pcall(cjson.decode, json)
  if ok then return job end
  return nil
end
