-- admin_signal.lua: store a signal ("quiet" or "stop") in a registered worker's info hash
-- for the worker to pick up; a stored "stop" is never downgraded to "quiet".
-- KEYS[1] the workers sorted set, KEYS[2] the worker's info hash
-- ARGV[1] P, ARGV[2] worker id, ARGV[3] signal
-- returns: 1 stored (or a stop already there), 0 the worker is not registered
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  return 0
end
if ARGV[3] == 'quiet' and redis.call('HGET', KEYS[2], 'signal') == 'stop' then
  return 1
end
redis.call('HSET', KEYS[2], 'signal', ARGV[3])
return 1
