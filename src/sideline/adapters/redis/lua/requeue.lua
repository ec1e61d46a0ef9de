-- requeue.lua: put an unfinished job back at the head of its queue.
-- KEYS[1] the worker's in-progress list for the job's queue
-- ARGV[1] P, ARGV[2] queue, ARGV[3] payload
-- returns: 1 if the job was in progress (and moved), else 0
if redis.call('LREM', KEYS[1], 1, ARGV[3]) == 0 then
  return 0
end
push_job(ARGV[1], ARGV[2], ARGV[3], true)
return 1
