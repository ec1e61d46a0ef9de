-- push.lua: append jobs to the tail of their queues.
-- KEYS[1] the queue-name set (routes the call to the namespace's slot; queue keys are
--   built from P, see _lib.lua)
-- ARGV[1] P; then pairs ARGV[2k], ARGV[2k+1] = queue, payload
-- returns: the number of jobs pushed
local P = ARGV[1]
local count = 0
for i = 2, #ARGV, 2 do
  push_job(P, ARGV[i], ARGV[i + 1], false)
  count = count + 1
end
return count
