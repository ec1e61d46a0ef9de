-- fetch.lua: reliable fetch of up to `limit` jobs, trying queues in the given order.
-- KEYS[2i-1] queue list i, KEYS[2i] this worker's in-progress list for queue i
-- ARGV[1] P, ARGV[2] limit
-- returns: flat list {queue_index, payload, queue_index, payload, ...}
local limit = tonumber(ARGV[2])
local found = {}
local taken = 0
for i = 1, #KEYS, 2 do
  while taken < limit do
    local raw = redis.call('LMOVE', KEYS[i], KEYS[i + 1], 'LEFT', 'RIGHT')
    if not raw then
      break
    end
    found[#found + 1] = (i + 1) / 2
    found[#found + 1] = raw
    taken = taken + 1
  end
end
if taken > 0 then
  -- recovery finds in-progress lists through the queue-name set: list every queue
  -- a job came from, even one filled by a plain RPUSH
  for i = 1, #KEYS, 2 do
    redis.call('SADD', ARGV[1] .. 'queues', string.sub(KEYS[i], #ARGV[1] + 7))
  end
end
return found
