-- complete_node.lua: a workflow node succeeded. In one atomic step: ack the job, mark
-- the node succeeded (once), decrement its successors' barriers, push the successors
-- that reached zero (delayed ones to the scheduled set), finish the run and push its
-- success callback; a run that succeeds is compacted to its summary and its memory
-- cleared (see _lib.lua settle). Completing an already succeeded node, or a node of a
-- compacted run (a late duplicate), only acks.
-- KEYS[1..5] run hash, nodes, remaining, graph, payloads; KEYS[6] the run's memory;
--   KEYS[7] the worker's in-progress list for the job's queue
-- ARGV[1] P, ARGV[2] run id, ARGV[3] node id, ARGV[4] now (s), ARGV[5] payload as fetched
-- returns: the transition as JSON (see _lib.lua outcome), or 'expired' (nothing acked)
local R = run_keys()
local P, run_id, id, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if not live(R, now) then
  return 'expired'
end
if compacted(R) then
  redis.call('LREM', KEYS[7], 1, ARGV[5])
  return outcome(nil, nil, false)
end
local current = redis.call('HGET', R.nodes, id)
if not current then
  return redis.error_reply('run ' .. run_id .. ' has no node ' .. id)
end
redis.call('LREM', KEYS[7], 1, ARGV[5])
if current == 'succeeded' then
  settle(R, P, now, nil, nil, false)
  return outcome(nil, nil, false)
end
local allow = gnode(R, id).allow
set_node(R, id, 'succeeded')
if current == 'dead' and allow then
  -- an allowed failure already released its successors when it died
  settle(R, P, now, nil, nil, false)
  return outcome(nil, nil, false)
end
local status, callback, finished = finish_node(R, P, run_id, id, now,
                                               current == 'dead' and not allow)
reopen_if_unsettled(R, finished)
settle(R, P, now, status, callback, finished)
return outcome(status, callback, finished)
