-- kill.lua: ack a job and keep it in the dead set (trimmed by size and age).
-- KEYS[1] the worker's in-progress list for the job's queue
-- ARGV[1] P, ARGV[2] payload as fetched, ARGV[3] jid, ARGV[4] queue, ARGV[5] dead payload,
-- ARGV[6] now (s), ARGV[7] keep (1, or 0 to drop it), ARGV[8] max dead jobs,
-- ARGV[9] dead ttl (s), ARGV[10] the worker's id (a concurrency slot the job holds is
-- freed: _lib.lua limit_free)
-- returns: 1
if redis.call('LREM', KEYS[1], 1, ARGV[2]) == 1 then
  limit_free(ARGV[1], ARGV[2], ARGV[10])
end
if ARGV[7] == '1' then
  add_dead(ARGV[1], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[8], ARGV[9])
end
return 1
