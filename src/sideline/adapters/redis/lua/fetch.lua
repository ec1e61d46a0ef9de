-- fetch.lua: reliable fetch of up to `limit` jobs (then up to `prefetch` more), trying
-- queues in the given order. Started jobs go to the worker's in-progress list of their
-- queue; prefetched ones to its prefetch list (claim.lua starts them later). Each job
-- taken uses up a wake token of its queue (_lib.lua on_taken), except one the caller's
-- BLPOP already took; a started workflow job is begun when ARGV[4] is not ''
-- (_lib.lua begin_fetched). A job its limit refuses (_lib.lua admit: its key's slots are
-- full, or its rate window is) is parked or scheduled instead, and the next one tried; a
-- call refuses at most PARK_PER_FETCH jobs, then leaves a wake token on the queue (so a
-- fetcher goes on at once) and returns what it found.
-- KEYS[3i-2] queue list i, KEYS[3i-1] this worker's in-progress list for queue i,
-- KEYS[3i] this worker's prefetch list for queue i
-- ARGV[1] P, ARGV[2] limit, ARGV[3] prefetch (taken only once `limit` jobs were found),
-- ARGV[4] now (s) to begin started workflow jobs at, or '' not to begin them,
-- ARGV[5] the number of the queue whose wake token the caller already took (0: none),
-- ARGV[6] now (s), for limits, ARGV[7] the worker's id (a slot's holder)
-- Keys built from P: queues, wake:<q>, and for limited jobs (_lib.lua admit) limits,
--   limit:<key>:running, limit:<key>:parked, limit:<key>:starts, schedule, schedule:jobs
-- returns: flat list {queue_index, payload, begun, ...} (begun: '' or begin_fetched's
--   decision): the started jobs first, then the prefetched ones
local P = ARGV[1]
local limit = tonumber(ARGV[2])
local prefetch = tonumber(ARGV[3] or '0')
local begin_now = ARGV[4] or ''
local credit = tonumber(ARGV[5] or '0')
local now, worker = ARGV[6], ARGV[7]
local found = {}
local taken = 0
local refused = 0
local function take(count, slot)
  local got = 0
  for i = 1, #KEYS, 3 do
    local index = (i + 2) / 3
    local queue = string.sub(KEYS[i], #P + 7)
    while got < count and refused < PARK_PER_FETCH do
      local raw = redis.call('LMOVE', KEYS[i], KEYS[i + slot], 'LEFT', 'RIGHT')
      if not raw then
        break
      end
      local credited = index == credit
      if credited then
        credit = 0
      end
      if admit(P, raw, queue, KEYS[i + slot], worker, now) then
        -- a prefetched job is not begun here: the thread that claims it calls begin_node
        local begun = on_taken(P, KEYS[i], raw, slot == 1 and begin_now or '', credited)
        found[#found + 1] = index
        found[#found + 1] = raw
        found[#found + 1] = begun
        got = got + 1
      else
        on_taken(P, KEYS[i], raw, '', credited)  -- its wake token goes with it
        refused = refused + 1
        if refused == PARK_PER_FETCH and redis.call('LLEN', KEYS[i]) > 0 then
          wake_queue(P, queue)
        end
      end
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
    redis.call('SADD', P .. 'queues', string.sub(KEYS[i], #P + 7))
  end
end
return found
