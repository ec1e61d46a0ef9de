-- kill.lua: ack a job and keep it in the dead set (trimmed by size and age).
-- KEYS[1] the worker's in-progress list for the job's queue
-- ARGV[1] P, ARGV[2] payload as fetched, ARGV[3] jid, ARGV[4] queue, ARGV[5] dead payload,
-- ARGV[6] now (s), ARGV[7] keep (1, or 0 to drop it), ARGV[8] max dead jobs,
-- ARGV[9] dead ttl (s)
-- returns: 1
redis.call('LREM', KEYS[1], 1, ARGV[2])
if ARGV[7] == '1' then
  add_dead(ARGV[1], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[8], ARGV[9])
end
return 1
