-- limit_view.lua: every limit key in use, from the index (never a scan), with what holds
-- it; a key nothing holds any more leaves the index as it is read: a concurrency key with
-- nothing running or parked, a rate key with no start left in its window (its starts go).
-- KEYS[1] the index of keys in use (P .. 'limits')
-- ARGV[1] P, ARGV[2] now (s)
-- Keys built from P: limit:<key>:running, limit:<key>:parked, limit:<key>:starts
-- returns: flat list {key, spec ("concurrency|<max>" or "rate|<limit>|<per_s>"), running,
--   parked, started, ...} sorted by key
local P, now = ARGV[1], tonumber(ARGV[2])
local index = redis.call('HGETALL', KEYS[1])
local keys = {}
for i = 1, #index, 2 do
  keys[#keys + 1] = {index[i], index[i + 1]}
end
table.sort(keys, function(a, b) return a[1] < b[1] end)
local found = {}
for _, item in ipairs(keys) do
  local key, spec = item[1], item[2]
  local base = P .. 'limit:' .. key
  local running = redis.call('HLEN', base .. ':running')
  local parked = redis.call('LLEN', base .. ':parked')
  local started = 0
  local per = string.match(spec, '^rate|[^|]*|(.*)$')
  if per and tonumber(per) then
    redis.call('ZREMRANGEBYSCORE', base .. ':starts', '-inf', num(now - tonumber(per)))
    started = redis.call('ZCARD', base .. ':starts')
  end
  if running + parked + started == 0 then
    redis.call('HDEL', KEYS[1], key)
    redis.call('DEL', base .. ':starts')
  else
    found[#found + 1] = key
    found[#found + 1] = spec
    found[#found + 1] = running
    found[#found + 1] = parked
    found[#found + 1] = started
  end
end
return found
