-- requeue.lua: put an unfinished job back at the head of its queue (graceful shutdown).
-- A job the worker no longer holds (settled, or recovered by another worker) is left
-- alone: pushing it again would run it twice.
-- KEYS[1] the worker's list that holds the job (in-progress, or prefetch if not started)
-- ARGV[1] P, ARGV[2] queue, ARGV[3] payload
-- returns: 1 if the job was held (and moved), else 0 (nothing pushed)
if redis.call('LREM', KEYS[1], 1, ARGV[3]) == 0 then
  return 0
end
push_job(ARGV[1], ARGV[2], ARGV[3], true)
return 1
