-- fetch.lua: reliable fetch of up to `limit` jobs (then up to `prefetch` more), trying
-- queues in the given order. Started jobs go to the worker's in-progress list of their
-- queue; prefetched ones to its prefetch list (claim.lua starts them later).
-- KEYS[3i-2] queue list i, KEYS[3i-1] this worker's in-progress list for queue i,
-- KEYS[3i] this worker's prefetch list for queue i
-- ARGV[1] P, ARGV[2] limit, ARGV[3] prefetch (taken only once `limit` jobs were found)
-- returns: flat list {queue_index, payload, queue_index, payload, ...}: the started jobs
--   first, then the prefetched ones
local limit = tonumber(ARGV[2])
local prefetch = tonumber(ARGV[3] or '0')
local found = {}
local taken = 0
local function take(count, slot)
  local got = 0
  for i = 1, #KEYS, 3 do
    while got < count do
      local raw = redis.call('LMOVE', KEYS[i], KEYS[i + slot], 'LEFT', 'RIGHT')
      if not raw then
        break
      end
      found[#found + 1] = (i + 2) / 3
      found[#found + 1] = raw
      got = got + 1
    end
  end
  return got
end
taken = take(limit, 1)
if taken == limit and prefetch > 0 then
  taken = taken + take(prefetch, 2)
end
if taken > 0 then
  -- recovery finds held lists through the queue-name set: list every queue a job came
  -- from, even one filled by a plain RPUSH
  for i = 1, #KEYS, 3 do
    redis.call('SADD', ARGV[1] .. 'queues', string.sub(KEYS[i], #ARGV[1] + 7))
  end
end
return found
