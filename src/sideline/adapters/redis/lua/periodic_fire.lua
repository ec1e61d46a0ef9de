-- periodic_fire.lua: claim an entry's ticks and push their jobs in one step, if nobody
-- did first (core.ports.PeriodicStore.fire_periodic: compare and set on the last tick).
-- KEYS[1] the entry's state hash P .. 'periodic:' .. name
-- ARGV[1] P, ARGV[2] the entry's fingerprint, ARGV[3] the last tick expected (ms, '' for
--   none stored), ARGV[4] the tick claimed up to (ms), ARGV[5] now (s), then triples
--   ARGV[6+3i..8+3i] = queue, payload, jid of each job to push
-- returns: 1 claimed (and pushed), 0 not (changed, paused, removed, or claimed already)
local P = ARGV[1]
local state = redis.call('HMGET', KEYS[1], 'fingerprint', 'last_tick_ms', 'paused')
if state[1] ~= ARGV[2] or state[3] == '1' or (state[2] or '') ~= ARGV[3] then
  return 0
end
redis.call('HSET', KEYS[1], 'last_tick_ms', ARGV[4])
local last_jid = nil
for i = 6, #ARGV, 3 do
  push_job(P, ARGV[i], ARGV[i + 1], false)
  last_jid = ARGV[i + 2]
end
if last_jid then
  redis.call('HSET', KEYS[1], 'last_fired_at', ARGV[5], 'last_jid', last_jid)
end
return 1
