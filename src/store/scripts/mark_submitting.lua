-- mark_submitting: KEYS the job hashes, ARGV[1] this owner. One HSET per job: a claim always
-- holds both fields, so an HSET that adds fields found no claim (it expired) and created a hash
-- without a TTL; that hash is removed again rather than left to live forever.
for _, key in ipairs(KEYS) do
  if redis.call('HSET', key, 'st', 'submitting', 'own', ARGV[1]) > 0 then
    redis.call('DEL', key)
  end
end
return 0
