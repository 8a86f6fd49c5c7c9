-- release: KEYS[1] this instance's alive key, ARGV[1] our incarnation. Deletes it only if it
-- is still ours: a newer process with the same instance id may have taken it over.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
