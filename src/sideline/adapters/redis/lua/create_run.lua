-- create_run.lua: store a new run and push (or schedule) its entry nodes, atomically.
-- KEYS[1..5] run hash, nodes, remaining, graph, payloads (see _lib.lua)
--   and KEYS[6] its memory
-- ARGV[1] P, ARGV[2] JSON document built by the client from core.run.start():
--   {"run": {field: value}, "nodes": [status], "remaining": [count], "graph": [field],
--    "payloads": [payload], "push": [[queue, payload, jid, at or false]],
--    "expire_s": key TTL (s), "clear_memory": true when the run is over at once,
--    "index": [run id, created_at (s, as text), how many runs the index keeps]}
--   The run enters the runs index, the sorted set P .. 'runs' scored by created_at,
--   trimmed to the newest entries (read by RunOps.recent_runs).
--   (an empty run is over at once: "run" then holds only its summary fields, and
--   finished_at: its run-finished signal "run:<id>:done" is given at once, as _lib.lua
--   signal_done gives it; any stale one of an earlier run of that id is dropped)
-- returns: 1, or an error reply if the run already exists
local P = ARGV[1]
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('run already exists')
end
local doc = cjson.decode(ARGV[2])
local run_fields = {}
for field, value in pairs(doc.run) do
  run_fields[#run_fields + 1] = field
  run_fields[#run_fields + 1] = tostring(value)
end
redis.call('HSET', KEYS[1], unpack(run_fields))

local function store(key, values)
  local chunk = {}
  for i, value in ipairs(values) do
    chunk[#chunk + 1] = tostring(i - 1)
    chunk[#chunk + 1] = tostring(value)
    if #chunk >= 1000 then
      redis.call('HSET', key, unpack(chunk))
      chunk = {}
    end
  end
  if #chunk > 0 then
    redis.call('HSET', key, unpack(chunk))
  end
end
store(KEYS[2], doc.nodes)
store(KEYS[3], doc.remaining)
store(KEYS[4], doc.graph)
store(KEYS[5], doc.payloads)

for _, job in ipairs(doc.push) do
  if job[4] then
    set_add(P, 'schedule', job[3], job[4], job[1], job[2])
  else
    push_job(P, job[1], job[2], false)
  end
end
for _, key in ipairs({KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]}) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('EXPIRE', key, tonumber(doc.expire_s))
  end
end
local done = KEYS[1] .. ':done'
redis.call('DEL', done)
if doc.run.finished_at then
  redis.call('RPUSH', done, doc.run.status)
  redis.call('EXPIRE', done, tonumber(doc.expire_s))
end
if doc.clear_memory then
  redis.call('DEL', KEYS[6])
end
redis.call('ZADD', P .. 'runs', doc.index[2], doc.index[1])
redis.call('ZREMRANGEBYRANK', P .. 'runs', 0, -1 - tonumber(doc.index[3]))
return 1
