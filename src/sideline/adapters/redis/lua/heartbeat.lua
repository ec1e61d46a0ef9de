-- heartbeat.lua: register a worker as alive until now + ttl, with the outage rule: when
-- the registry heard no heartbeat at all for more than ttl / 2 (Redis was unreachable,
-- or every worker was cut off), every worker alive when the silence began gets the
-- silence added to its expiry, so nobody is judged dead for an outage all shared.
-- KEYS[1] the workers sorted set (score: expiry), KEYS[2] this worker's info hash,
-- KEYS[3] the newest heartbeat's time
-- ARGV[1] P, ARGV[2] worker id, ARGV[3] now (s), ARGV[4] ttl (s), ARGV[5] info hash ttl (s),
-- ARGV[6..] info as field, value pairs
-- returns: the silence compensated, in seconds (0 when there was none)
local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local last = tonumber(redis.call('GET', KEYS[3]) or '')
local gap = 0
if last and ttl > 0 and now - last > ttl / 2 then
  gap = now - last
  local alive = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. num(last), '+inf', 'WITHSCORES')
  for i = 1, #alive, 2 do
    redis.call('ZADD', KEYS[1], num(tonumber(alive[i + 1]) + gap), alive[i])
  end
end
if ttl > 0 and (not last or now > last) then
  redis.call('SET', KEYS[3], num(now))
end
redis.call('ZADD', KEYS[1], num(now + ttl), ARGV[2])
if #ARGV > 5 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 6))
end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
return num(gap)
