-- retry_dead.lua: move a dead job back to its queue; for a workflow node, revive it in
-- the same step (node queued again, dependants un-skipped, run running again when no
-- other node blocks it). The job of a compacted run (it succeeded or was cancelled) is
-- only pushed: its worker will skip it.
-- KEYS[1..5] run hash, nodes, remaining, graph, payloads (of the job's run, if any)
-- ARGV[1] P, ARGV[2] jid, ARGV[3] now (s), ARGV[4] dead entry as read ("queue|payload"),
-- ARGV[5] node id or '', ARGV[6] payload to push
-- returns: 1 moved, 0 the job is no longer in the dead set (or changed since it was read)
-- (the revive is _lib.lua plan_revive, the twin of core.run.plan_revive)
local R = run_keys()
local P, jid, now, id = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local entry = redis.call('HGET', P .. 'dead:jobs', jid)
if entry ~= ARGV[4] then
  return 0
end
set_remove(P, 'dead', jid)
if id ~= '' then
  plan_revive(R, P, id, now)
end
local queue = split_entry(entry)
push_job(P, queue, ARGV[6], false)
return 1
