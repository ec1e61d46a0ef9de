-- requeue.lua: put an unfinished job back at the head of its queue (graceful shutdown).
-- A job the worker no longer holds (settled, or recovered by another worker) is left
-- alone: pushing it again would run it twice. A job holding a concurrency slot frees it
-- (and one parked job of its key goes back to its queue head, behind this one).
-- KEYS[1] the worker's list that holds the job (in-progress, or prefetch if not started)
-- ARGV[1] P, ARGV[2] queue, ARGV[3] payload, ARGV[4] the worker's id
-- Keys built from P: queue:<q>, wake:<q>, queues; limits, limit:<key>:running and
--   limit:<key>:parked (_lib.lua limit_free)
-- returns: 1 if the job was held (and moved), else 0 (nothing pushed)
if redis.call('LREM', KEYS[1], 1, ARGV[3]) == 0 then
  return 0
end
limit_free(ARGV[1], ARGV[3], ARGV[4])
push_job(ARGV[1], ARGV[2], ARGV[3], true)
return 1
