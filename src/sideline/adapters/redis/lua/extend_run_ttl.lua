-- extend_run_ttl.lua: push back a run's expiry to at least now + ttl (never forward); a
-- compacted run's summary too, and its run-finished signal "run:<id>:done".
-- KEYS[1..5] run hash, nodes, remaining, graph, payloads
-- ARGV[1] P, ARGV[2] ttl (s), ARGV[3] now (s)
-- returns: 1, or 0 if the run is gone
local R = run_keys()
local ttl, now = tonumber(ARGV[2]), ARGV[3]
if not live(R, now) then
  return 0
end
local expires = math.max(tonumber(redis.call('HGET', R.run, 'expires_at')), tonumber(now) + ttl)
redis.call('HSET', R.run, 'expires_at', num(expires))
local real_ttl = math.ceil(expires - tonumber(now)) + 60
for _, key in ipairs({R.run, R.nodes, R.remaining, R.graph, R.payloads, R.run .. ':done'}) do
  if redis.call('TTL', key) < real_ttl then
    redis.call('EXPIRE', key, real_ttl)
  end
end
return 1
