-- begin_node.lua: mark a fetched workflow node running, or say to skip it; a node that
-- runs (a retry of a running one too) counts one more attempt, "attempts:<node>" in the
-- run hash (core.run.RunState.attempts).
-- KEYS[1..5] run hash, nodes, remaining, graph, payloads; KEYS[6] the run's memory
-- ARGV[1] P, ARGV[2] run id, ARGV[3] node id, ARGV[4] now (s)
-- returns: 'run', 'skip' (already succeeded or dead, the run was cancelled, or it finished
--   and was compacted), 'expired' (no run state), or an error reply for an unknown node
local R = run_keys()
local P, id, now = ARGV[1], ARGV[3], ARGV[4]
if not live(R, now) then
  return 'expired'
end
if compacted(R) then
  return 'skip'
end
local current = redis.call('HGET', R.nodes, id)
if not current then
  return redis.error_reply('run ' .. ARGV[2] .. ' has no node ' .. id)
end
local status = redis.call('HGET', R.run, 'status')
local decision = 'run'
if current == 'succeeded' or current == 'cancelled' or status == 'cancelled' then
  decision = 'skip'
elseif current == 'dead' then
  -- runs again only once revived; an allowed failure retried by hand runs but stays
  -- dead until it succeeds (its successors were counted when it died)
  if not gnode(R, id).allow then
    decision = 'skip'
  end
elseif current ~= 'running' then
  set_node(R, id, 'running')
end
if decision == 'run' then
  redis.call('HINCRBY', R.run, 'attempts:' .. id, 1)
end
settle(R, P, now, nil, nil, false)
return decision
