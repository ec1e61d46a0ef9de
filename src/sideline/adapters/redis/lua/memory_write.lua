-- memory_write.lua: set keys of a run's memory and push its expiry back to at least ttl
-- from now; with no keys, only push back the expiry of memory that exists.
-- KEYS[1] the run's memory hash
-- ARGV[1] ttl (ms), ARGV[2..] key, JSON value, key, JSON value, ...
-- returns: 1 if the memory exists afterwards, else 0
local ttl = tonumber(ARGV[1])
if #ARGV > 1 then
  for first = 2, #ARGV, 1000 do  -- chunks: unpack is bounded by Lua's stack
    redis.call('HSET', KEYS[1], unpack(ARGV, first, math.min(first + 999, #ARGV)))
  end
elseif redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
