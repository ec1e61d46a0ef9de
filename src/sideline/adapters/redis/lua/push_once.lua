-- push_once.lua: append jobs to the tail of their queues, each unless its jid was pushed
-- by push_once within the marker's TTL (the transactional outbox relay's idempotent push).
-- KEYS[1] the queue-name set (routes the call to the namespace's slot; queue and marker
--   keys are built from P, see _lib.lua)
-- ARGV[1] P; ARGV[2] the markers' TTL in milliseconds;
--   then triples ARGV[3k], ARGV[3k+1], ARGV[3k+2] = jid, queue, payload
-- returns: the number of jobs pushed (those whose marker P pushed:<jid> was absent)
local P = ARGV[1]
local ttl_ms = tonumber(ARGV[2])
local count = 0
for i = 3, #ARGV, 3 do
  if redis.call('SET', P .. 'pushed:' .. ARGV[i], '1', 'PX', ttl_ms, 'NX') then
    push_job(P, ARGV[i + 1], ARGV[i + 2], false)
    count = count + 1
  end
end
return count
