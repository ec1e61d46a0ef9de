-- cancel_run.lua: cancel a run; nodes not yet running are cancelled and the scheduled or
-- retry entries of its nodes (jids "<run_id>.<node>") removed; running nodes finish but
-- release nothing. Its callbacks stay: a callback is the run reporting on itself (a
-- failure callback waiting to retry reports a death that happened before the cancel).
-- The cancelled run is compacted to its summary and its memory cleared (_lib.lua settle).
-- KEYS[1..5] run hash, nodes, remaining, graph, payloads; KEYS[6] the run's memory
-- ARGV[1] P, ARGV[2] run id, ARGV[3] now (s)
-- returns: 1 cancelled, 0 already succeeded or cancelled, -1 no run state
local R = run_keys()
local P, run_id, now = ARGV[1], ARGV[2], ARGV[3]
if not live(R, now) then
  return -1
end
if compacted(R) then
  return 0
end
local status = redis.call('HGET', R.run, 'status')
if status == 'succeeded' or status == 'cancelled' then
  settle(R, P, now, nil, nil, false)
  return 0
end
local stoppable = {pending = true, queued = true, scheduled = true, skipped = true}
local all = redis.call('HGETALL', R.nodes)
for i = 1, #all, 2 do
  if stoppable[all[i + 1]] then
    set_node(R, all[i], 'cancelled')
  end
  for _, kind in ipairs({'schedule', 'retry'}) do
    set_remove(P, kind, run_id .. '.' .. all[i])
  end
end
settle(R, P, now, 'cancelled', nil, true)
return 1
