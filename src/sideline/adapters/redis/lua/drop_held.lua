-- drop_held.lua: take one job out of a worker's hands without pushing it anywhere (an
-- ack; an orphan deleted from the admin API). A job holding a concurrency slot frees it,
-- and one parked job of its key goes back to its queue head (_lib.lua limit_free).
-- KEYS[1] the worker's list that holds the job (in-progress, or prefetch)
-- ARGV[1] P, ARGV[2] payload as held, ARGV[3] the worker's id
-- Keys built from P: limits, limit:<key>:running, limit:<key>:parked, and the parked
--   job's queue:<q>, wake:<q>, queues
-- returns: 1 if the job was held (and dropped), else 0
if redis.call('LREM', KEYS[1], 1, ARGV[2]) == 0 then
  return 0
end
limit_free(ARGV[1], ARGV[2], ARGV[3])
return 1
