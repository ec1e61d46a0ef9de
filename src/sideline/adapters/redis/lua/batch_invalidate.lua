-- batch_invalidate.lua: mark a batch invalid (its jobs see `valid` false).
-- KEYS[1] the recent-batches index (routes the call to the namespace's slot)
-- ARGV[1] P, ARGV[2] bid, ARGV[3] now (s)
-- returns: 1, or 0 if the batch is unknown or expired
local B = batch_keys(ARGV[1], ARGV[2])
if not batch_live(B, ARGV[3]) then
  return 0
end
redis.call('HSET', B.hash, 'invalidated', '1')
return 1
