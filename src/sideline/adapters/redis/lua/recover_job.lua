-- recover_job.lua: move one job of a dead worker back to the head of its queue. A job
-- holding a concurrency slot frees it (and one parked job of its key goes back to its
-- queue head, behind this one).
-- KEYS[1] the dead worker's in-progress (or prefetch) list for the queue
-- ARGV[1] P, ARGV[2] queue, ARGV[3] payload as held, ARGV[4] payload to push
--   (recoveries counter raised by one), ARGV[5] the dead worker's id
-- Keys built from P: queue:<q>, wake:<q>, queues; limits, limit:<key>:running and
--   limit:<key>:parked (_lib.lua limit_free)
-- returns: 1 if moved, 0 if the job was no longer there (someone else moved it)
if redis.call('LREM', KEYS[1], 1, ARGV[3]) == 0 then
  return 0
end
limit_free(ARGV[1], ARGV[3], ARGV[5])
push_job(ARGV[1], ARGV[2], ARGV[4], true)
return 1
