-- fail_node.lua: a workflow node died. In one atomic step: ack the job, keep it in the
-- dead set, mark the node dead, skip its dependants, mark the run failed and push the
-- failure callback once. An allow-failure node lets its successors run instead (and may
-- finish the run succeeded: it is then compacted). The node's error is kept in the run
-- hash as "error:<node>" for status and the summary. A node of a compacted run (a late
-- copy) is only acked and buried.
-- KEYS[1..5] run hash, nodes, remaining, graph, payloads; KEYS[6] the run's memory;
--   KEYS[7] the worker's in-progress list for the job's queue
-- ARGV[1] P, ARGV[2] run id, ARGV[3] node id, ARGV[4] now (s), ARGV[5] payload as fetched,
-- ARGV[6] jid, ARGV[7] queue, ARGV[8] dead payload, ARGV[9] keep in dead set (1/0),
-- ARGV[10] max dead jobs, ARGV[11] dead ttl (s), ARGV[12] the error as JSON
--   [error_class, error_message], ARGV[13] the worker's id (a concurrency slot the job
--   holds is freed: _lib.lua limit_free)
-- (the run part is _lib.lua plan_fail, which settle.lua shares)
-- returns: the transition as JSON (see _lib.lua outcome)
local R = run_keys()
local P, now = ARGV[1], ARGV[4]
if redis.call('LREM', KEYS[7], 1, ARGV[5]) == 1 then
  limit_free(P, ARGV[5], ARGV[13])
end
if ARGV[9] == '1' then
  add_dead(P, ARGV[6], ARGV[7], ARGV[8], now, ARGV[10], ARGV[11])
end
return plan_fail(R, P, ARGV[2], ARGV[3], now, ARGV[12])
