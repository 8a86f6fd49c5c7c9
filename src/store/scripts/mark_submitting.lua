-- mark_submitting: KEYS the job hashes, ARGV[1] this owner. Only existing claims change: a
-- hash created here would have no TTL and live forever.
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'st', 'submitting', 'own', ARGV[1])
  end
end
return 0
