-- cancel_run.lua: cancel a run; nodes not yet running are cancelled and the scheduled or
-- retry entries of its nodes (jids "<run_id>.<node>") removed; running nodes finish but
-- release nothing. Its callbacks stay: a callback is the run reporting on itself (a
-- failure callback waiting to retry reports a death that happened before the cancel).
-- The cancelled run is compacted to its summary and its memory cleared (_lib.lua settle).
-- KEYS[1..5] run hash, nodes, remaining, graph, payloads; KEYS[6] the run's memory
-- ARGV[1] P, ARGV[2] run id, ARGV[3] now (s)
-- returns: 1 cancelled, 0 already succeeded or cancelled, -1 no run state
-- (the run part is _lib.lua plan_cancel, the twin of core.run.plan_cancel)
local R = run_keys()
return plan_cancel(R, ARGV[1], ARGV[2], ARGV[3])
