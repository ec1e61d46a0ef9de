-- cancel_run.lua: cancel a run; nodes not yet running are cancelled and their scheduled
-- or retrying jobs removed; running nodes finish but release nothing.
-- KEYS[1..5] run hash, nodes, remaining, graph, payloads
-- ARGV[1] P, ARGV[2] run id, ARGV[3] now (s)
-- returns: 1 cancelled, 0 already succeeded or cancelled, -1 no run state
local R = run_keys()
local P, run_id, now = ARGV[1], ARGV[2], ARGV[3]
if not live(R, now) then
  return -1
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
end
settle(R, P, now, 'cancelled', nil, true)
local prefix = run_id .. '.'
for _, kind in ipairs({'schedule', 'retry'}) do
  for _, jid in ipairs(redis.call('ZRANGE', P .. kind, 0, -1)) do
    if string.sub(jid, 1, #prefix) == prefix then
      set_remove(P, kind, jid)
    end
  end
end
return 1
