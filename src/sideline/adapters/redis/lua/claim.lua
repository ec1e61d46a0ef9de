-- claim.lua: start a prefetched job: move it from the worker's prefetch list to its
-- in-progress list (recovery then counts it as started).
-- KEYS[1] the worker's prefetch list for the job's queue, KEYS[2] its in-progress list
-- ARGV[1] P, ARGV[2] payload as fetched
-- returns: 1 if moved, 0 if the job was no longer there (recovered by another worker)
if redis.call('LREM', KEYS[1], 1, ARGV[2]) == 0 then
  return 0
end
redis.call('RPUSH', KEYS[2], ARGV[2])
return 1
