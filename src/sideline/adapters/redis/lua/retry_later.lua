-- retry_later.lua: ack a failed job and add its updated payload to the retry set.
-- KEYS[1] the worker's in-progress list for the job's queue
-- ARGV[1] P, ARGV[2] payload as fetched, ARGV[3] jid, ARGV[4] due time (s),
-- ARGV[5] queue, ARGV[6] updated payload, ARGV[7] the worker's id (a concurrency slot
-- the job holds is freed: _lib.lua limit_free)
-- returns: 1
if redis.call('LREM', KEYS[1], 1, ARGV[2]) == 1 then
  limit_free(ARGV[1], ARGV[2], ARGV[7])
end
set_add(ARGV[1], 'retry', ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return 1
