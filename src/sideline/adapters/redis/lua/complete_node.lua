-- complete_node.lua: a workflow node succeeded. In one atomic step: ack the job, mark
-- the node succeeded (once), decrement its successors' barriers, push the successors
-- that reached zero (delayed ones to the scheduled set), finish the run and push its
-- success callback; a run that succeeds is compacted to its summary and its memory
-- cleared (see _lib.lua settle). Completing an already succeeded node, or a node of a
-- compacted run (a late duplicate), only acks.
-- KEYS[1..5] run hash, nodes, remaining, graph, payloads; KEYS[6] the run's memory;
--   KEYS[7] the worker's in-progress list for the job's queue
-- ARGV[1] P, ARGV[2] run id, ARGV[3] node id, ARGV[4] now (s), ARGV[5] payload as fetched,
-- ARGV[6] the worker's id (a concurrency slot the job holds is freed: _lib.lua limit_free)
-- (the run part is _lib.lua plan_complete, which settle.lua shares)
-- returns: the transition as JSON (see _lib.lua outcome), or 'expired' (nothing acked)
local R = run_keys()
local P, run_id, id, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local current = completion_check(R, id, now)
if current == 'expired' then
  return 'expired'
elseif current == 'missing' then
  return redis.error_reply('run ' .. run_id .. ' has no node ' .. id)
end
if redis.call('LREM', KEYS[7], 1, ARGV[5]) == 1 then
  limit_free(P, ARGV[5], ARGV[6])
end
return plan_complete(R, P, run_id, id, now, current)
