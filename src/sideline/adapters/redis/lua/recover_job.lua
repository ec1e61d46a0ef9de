-- recover_job.lua: move one job of a dead worker back to the head of its queue.
-- KEYS[1] the dead worker's in-progress list for the queue
-- ARGV[1] P, ARGV[2] queue, ARGV[3] payload as held, ARGV[4] payload to push
--   (recoveries counter raised by one)
-- returns: 1 if moved, 0 if the job was no longer there (someone else moved it)
if redis.call('LREM', KEYS[1], 1, ARGV[3]) == 0 then
  return 0
end
push_job(ARGV[1], ARGV[2], ARGV[4], true)
return 1
