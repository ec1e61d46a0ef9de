-- begin_node.lua: mark a fetched workflow node running, or say to skip it; a node that
-- runs (a retry of a running one too) counts one more attempt, "attempts:<node>" in the
-- run hash (core.run.RunState.attempts).
-- KEYS[1..5] run hash, nodes, remaining, graph, payloads; KEYS[6] the run's memory
-- ARGV[1] P, ARGV[2] run id, ARGV[3] node id, ARGV[4] now (s)
-- returns: 'run', 'skip' (already succeeded or dead, the run was cancelled, or it finished
--   and was compacted), 'expired' (no run state), or an error reply for an unknown node
-- (the decision is _lib.lua plan_begin, the twin of core.run.plan_begin)
local R = run_keys()
return plan_begin(R, ARGV[1], ARGV[2], ARGV[3], ARGV[4])
