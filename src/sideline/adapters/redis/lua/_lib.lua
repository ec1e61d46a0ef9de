-- _lib.lua: helpers prepended to every sideline script, so each operation stays one file.
--
-- P (always ARGV[1]) is the key prefix "{namespace}:". Keys a script builds from P
-- (destination queues read from stored run data, wake lists, the sorted sets) carry
-- the same {namespace} hash tag as the keys passed in KEYS, so every key a script
-- touches lives in one Redis Cluster slot.
--
-- Sorted sets (schedule, retry, dead) hold jids scored by time; their payloads live in
-- the hash "<set>:jobs" as "queue|payload" (queue names never contain '|').

local function num(x)
  return string.format('%.17g', x)
end

-- Add a wake token to queue `queue`: a worker blocked in BLPOP on it returns at once.
local function wake_queue(P, queue)
  local wake = P .. 'wake:' .. queue
  redis.call('RPUSH', wake, '1')
  redis.call('LTRIM', wake, -16, -1)
end

local function push_job(P, queue, raw, front)
  if front then
    redis.call('LPUSH', P .. 'queue:' .. queue, raw)
  else
    redis.call('RPUSH', P .. 'queue:' .. queue, raw)
  end
  redis.call('SADD', P .. 'queues', queue)
  -- one wake token per push lets a worker blocked in BLPOP start the job at once
  wake_queue(P, queue)
end

-- Append "field":value to a compact JSON object. JSON decoders keep the last of
-- duplicate keys, so the appended value wins over an older one.
local function stamp(raw, field, value)
  return string.sub(raw, 1, -2) .. ',"' .. field .. '":' .. value .. '}'
end

local function split_entry(entry)
  local bar = string.find(entry, '|', 1, true)
  if not bar then
    -- not written by sideline: hand it to the default queue, whose worker dead-letters it
    return 'default', entry
  end
  return string.sub(entry, 1, bar - 1), string.sub(entry, bar + 1)
end

local function set_add(P, kind, jid, at, queue, raw)
  redis.call('ZADD', P .. kind, at, jid)
  redis.call('HSET', P .. kind .. ':jobs', jid, queue .. '|' .. raw)
end

local function set_remove(P, kind, jid)
  redis.call('ZREM', P .. kind, jid)
  redis.call('HDEL', P .. kind .. ':jobs', jid)
end

-- A job whose jid is already in the dead set (a duplicate, or a forged jid) is kept under
-- "<jid>~2", "<jid>~3", ... so that nothing dead is overwritten (core.ports.dead_key).
local function add_dead(P, jid, queue, raw, now, max_dead, dead_ttl)
  local key = jid
  local n = 1
  while redis.call('HEXISTS', P .. 'dead:jobs', key) == 1 do
    n = n + 1
    key = jid .. '~' .. n
  end
  set_add(P, 'dead', key, now, queue, raw)
  local cutoff = tonumber(now) - tonumber(dead_ttl)
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', P .. 'dead', '-inf', '(' .. num(cutoff))) do
    set_remove(P, 'dead', old)
  end
  local extra = redis.call('ZCARD', P .. 'dead') - tonumber(max_dead)
  if extra > 0 then
    for _, old in ipairs(redis.call('ZRANGE', P .. 'dead', 0, extra - 1)) do
      set_remove(P, 'dead', old)
    end
  end
end

-- ---- workflow runs: KEYS[1..5] are the run's hash, nodes, remaining, graph, payloads, ----
-- ---- and KEYS[6] (where the operation can finish the run) the run's memory hash      ----

-- The state of one call, empty when it starts: a script's chunk runs whole at every call,
-- a function of the library (_scripts.py library) calls begin_call() first.
-- node_clock: the time of this operation, for set_node's node times (every script that
--   changes a node's status first asks live(R, now), which records it);
-- graph_cache: per run graph key, then per node (one call may touch two runs: settle.lua
--   completes one step and begins the next job's);
-- changes, remaining_changes, releases: what the call did to its run (see outcome).
local node_clock, graph_cache, changes, remaining_changes, releases

local function begin_call()
  node_clock = nil
  graph_cache, changes, remaining_changes, releases = {}, {}, {}, {}
end

begin_call()

local function run_keys()
  return {run = KEYS[1], nodes = KEYS[2], remaining = KEYS[3], graph = KEYS[4],
          payloads = KEYS[5], memory = KEYS[6]}
end

-- A run that finished succeeded or cancelled keeps only its summary (see compact).
local function compacted(R)
  return redis.call('HEXISTS', R.run, 'summary') == 1
end

local function live(R, now)
  node_clock = now
  local expires = redis.call('HGET', R.run, 'expires_at')
  if not expires then
    return false
  end
  if tonumber(expires) <= tonumber(now) then
    redis.call('DEL', R.run, R.nodes, R.remaining, R.graph, R.payloads, R.run .. ':done')
    return false
  end
  return true
end

-- graph field: "queue|delay_ms|allow_failure(0/1)|succ,succ,..."
local function gnode(R, id)
  local run_cache = graph_cache[R.graph]
  if not run_cache then
    run_cache = {}
    graph_cache[R.graph] = run_cache
  end
  local cached = run_cache[id]
  if cached then
    return cached
  end
  local raw = redis.call('HGET', R.graph, id)
  if not raw then
    return nil
  end
  local queue, delay, allow, succ = string.match(raw, '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
  local succs = {}
  for s in string.gmatch(succ, '[^,]+') do
    succs[#succs + 1] = s
  end
  cached = {queue = queue, delay = tonumber(delay), allow = (allow == '1'), succ = succs}
  run_cache[id] = cached
  return cached
end

local function is_ok(status, allow)
  return status == NODE.SUCCEEDED or (status == NODE.DEAD and allow)
end

local function flag(b)
  return b and 1 or 0
end

-- Set a node's status, keeping the run's counters (ok, blocking, settled) in step and
-- its times (core.run.apply) in the run hash: a node becoming running gets
-- "started:<id>" and loses "ended:<id>"; one becoming succeeded or dead gets "ended:<id>".
local function set_node(R, id, new)
  local old = redis.call('HGET', R.nodes, id)
  if old == new then
    return
  end
  local allow = gnode(R, id).allow
  local d_ok = flag(is_ok(new, allow)) - flag(is_ok(old, allow))
  local d_block = flag(new == NODE.DEAD and not allow) - flag(old == NODE.DEAD and not allow)
  local d_settled = flag(SETTLED[new]) - flag(SETTLED[old])
  redis.call('HSET', R.nodes, id, new)
  if d_ok ~= 0 then redis.call('HINCRBY', R.run, 'ok', d_ok) end
  if d_block ~= 0 then redis.call('HINCRBY', R.run, 'blocking', d_block) end
  if d_settled ~= 0 then redis.call('HINCRBY', R.run, 'settled', d_settled) end
  if new == NODE.RUNNING then
    redis.call('HSET', R.run, 'started:' .. id, node_clock)
    redis.call('HDEL', R.run, 'ended:' .. id)
  elseif new == NODE.SUCCEEDED or new == NODE.DEAD then
    redis.call('HSET', R.run, 'ended:' .. id, node_clock)
  end
  changes[#changes + 1] = {tonumber(id), new}
end

local function counter(R, name)
  return tonumber(redis.call('HGET', R.run, name) or '0')
end

local function release(R, P, run_id, id, now)
  local g = gnode(R, id)
  local raw = stamp(redis.call('HGET', R.payloads, id), 'enqueued_at', now)
  if g.delay > 0 then
    set_add(P, 'schedule', run_id .. '.' .. id, num(tonumber(now) + g.delay / 1000), g.queue, raw)
    set_node(R, id, NODE.SCHEDULED)
  else
    push_job(P, g.queue, raw, false)
    set_node(R, id, NODE.QUEUED)
  end
  releases[#releases + 1] = {tonumber(id), g.delay}
end

local function descendants(R, id)
  local seen = {}
  local stack = {}
  for _, s in ipairs(gnode(R, id).succ) do stack[#stack + 1] = s end
  while #stack > 0 do
    local current = table.remove(stack)
    if not seen[current] then
      seen[current] = true
      for _, s in ipairs(gnode(R, current).succ) do stack[#stack + 1] = s end
    end
  end
  return seen
end

-- The run's expiry after a change (core.run.next_expiry), called once finished_at is
-- written, with how to apply it: the change that finishes the run sets it to now +
-- finished_ttl_s ('replace': it may shorten the keys' TTL); a finished run, or one with
-- at least ttl_s left, keeps it (nil: nothing to write); any other change pushes it back
-- to now + ttl_s plus the headroom ('extend'), never forward.
local function next_expiry(R, now, finished)
  local f = redis.call('HMGET', R.run, 'expires_at', 'ttl_s', 'finished_ttl_s', 'finished_at')
  if finished then
    return tonumber(now) + tonumber(f[3] or FINISHED_TTL_S), 'replace'
  end
  local expires, ttl = tonumber(f[1]), tonumber(f[2])
  if f[4] or expires >= tonumber(now) + ttl then
    return expires, nil
  end
  return tonumber(now) + ttl * (1 + RUN_TTL_HEADROOM), 'extend'
end

-- Give the run's keys the expiry plus a minute; unless `replace`, never shorten a TTL.
local function expire_run(R, now, expires, replace)
  local ttl = math.ceil(expires - tonumber(now)) + 60
  for _, key in ipairs({R.run, R.nodes, R.remaining, R.graph, R.payloads}) do
    if replace or redis.call('TTL', key) < ttl then
      redis.call('EXPIRE', key, ttl)
    end
  end
  return ttl
end

-- Keep only the summary of a run that finished (core.run.summarize): its times, how many
-- nodes ended in each status, and its dead nodes with their job and error; drop the graph
-- and payloads, and the run's memory unless the run keeps it.
local function compact(R, ttl)
  local all = redis.call('HGETALL', R.nodes)
  local counts, failed = {}, {}
  for i = 1, #all, 2 do
    local id, status = all[i], all[i + 1]
    counts[status] = (counts[status] or 0) + 1
    if status == NODE.DEAD then
      local ok, payload = pcall(cjson.decode, redis.call('HGET', R.payloads, id))
      local job = ok and type(payload) == 'table' and payload.name or '?'
      failed[#failed + 1] = {tonumber(id), job, redis.call('HGET', R.run, 'error:' .. id) or ''}
    end
  end
  table.sort(failed, function(a, b) return a[1] < b[1] end)
  local run = redis.call('HMGET', R.run, 'status', 'created_at', 'updated_at', 'finished_at',
                         'expires_at', 'keep_memory')
  redis.call('DEL', R.run, R.nodes, R.remaining, R.graph, R.payloads)
  redis.call('HSET', R.run, 'status', run[1], 'created_at', run[2], 'updated_at', run[3],
             'finished_at', run[4], 'expires_at', run[5],
             'summary', cjson.encode({counts = counts, failed = failed}))
  redis.call('EXPIRE', R.run, ttl)
  if run[6] ~= '1' and R.memory then
    redis.call('DEL', R.memory)
  end
end

-- The run-finished signal (core.ports.ResultStore.wait_run): while a run is finished its
-- list "run:<id>:done" holds one element, the run's status, and lives as long as the run
-- hash. Waiters block on it with BRPOPLPUSH done done, which rotates the one element onto
-- itself: it is never consumed, so every waiter sees it. Compaction leaves it alone.
local function signal_done(R, status, ttl)
  local done = R.run .. ':done'
  redis.call('DEL', done)
  redis.call('RPUSH', done, status)
  if ttl then
    redis.call('EXPIRE', done, ttl)
  else
    local left = redis.call('PTTL', R.run)
    if left > 0 then
      redis.call('PEXPIRE', done, left)
    end
  end
end

-- A finished run has work again (a failed run revived, or a late node of it): it is no
-- longer finished, and its signal is withdrawn.
local function unfinish(R)
  if redis.call('HDEL', R.run, 'finished_at') == 1 then
    redis.call('DEL', R.run .. ':done')
  end
end

-- Write the run-level outcome, push the callback it fires, set the expiry; a run that
-- finishes succeeded or cancelled is compacted (core.run.Transition.compacts). Every
-- step that finishes a run comes here, and gives its signal (signal_done).
local function settle(R, P, now, status, callback, finished)
  if status then
    redis.call('HSET', R.run, 'status', status)
  end
  if callback == 'failure' then
    redis.call('HSET', R.run, 'failure_fired', '1')
  end
  if finished then
    redis.call('HSET', R.run, 'finished_at', now)
  elseif status == RUN.RUNNING then
    unfinish(R)
  end
  local expires, write = next_expiry(R, now, finished)
  redis.call('HSET', R.run, 'updated_at', now)
  local ttl = nil
  if write then
    redis.call('HSET', R.run, 'expires_at', num(expires))
    ttl = expire_run(R, now, expires, write == 'replace')
  end
  if callback then
    local entry = redis.call('HGET', R.run, 'on_' .. callback)
    if entry then
      local queue, raw = split_entry(entry)
      push_job(P, queue, stamp(raw, 'enqueued_at', now), false)
    end
  end
  if finished then
    signal_done(R, status or redis.call('HGET', R.run, 'status'), ttl)
  end
  if finished and (status == RUN.SUCCEEDED or status == RUN.CANCELLED) then
    compact(R, ttl)
  end
end

local function outcome(status, callback, finished)
  return cjson.encode({nodes = changes, remaining = remaining_changes, releases = releases,
                       status = status or false, callback = callback or false,
                       finished = finished and true or false})
end

-- ---- the run state machine: one function per function of core/run.py, same names ----
-- Each plans and applies in one go (core.run.plan_* then core.run.apply), in the order
-- of core/run.py: node statuses as set_node writes them, then the run-level outcome
-- (settle). The helpers come first (Lua locals are defined before use).

-- mirrors core.run._unskip: skipped nodes that no blocking dead node reaches any more go
-- back to pending.
local function unskip(R)
  local all = redis.call('HGETALL', R.nodes)
  local blocked = {}
  for i = 1, #all, 2 do
    if all[i + 1] == NODE.DEAD and not gnode(R, all[i]).allow then
      for d in pairs(descendants(R, all[i])) do blocked[d] = true end
    end
  end
  for i = 1, #all, 2 do
    if all[i + 1] == NODE.SKIPPED and not blocked[all[i]] then
      set_node(R, all[i], NODE.PENDING)
    end
  end
end

-- mirrors core.run._finish_node: the shared tail of success and allowed failure. Decrement
-- the successors' barriers, release those reaching zero, settle the run's status; a failed
-- run that had finished is unfinished again once it has work left (Transition.reopened).
-- Returns the run status, callback and finished flag for settle.
local function finish_node(R, P, run_id, id, now, was_blocking)
  local status = redis.call('HGET', R.run, 'status')
  local cancelled = status == RUN.CANCELLED
  for _, s in ipairs(gnode(R, id).succ) do
    local count = redis.call('HINCRBY', R.remaining, s, -1)
    remaining_changes[#remaining_changes + 1] = {tonumber(s), count}
    if count == 0 and not cancelled then
      release(R, P, run_id, s, now)
    end
  end
  if was_blocking then
    unskip(R)
  end
  if cancelled then
    return nil, nil, false
  end
  local n = counter(R, 'n')
  local run_status, callback, finished = nil, nil, false
  if counter(R, 'ok') == n then
    run_status, callback, finished = RUN.SUCCEEDED, 'success', true
  elseif status == RUN.FAILED and counter(R, 'blocking') == 0 then
    run_status = RUN.RUNNING
  elseif status == RUN.FAILED and counter(R, 'settled') == n then
    finished = not redis.call('HGET', R.run, 'finished_at')
  end
  if not finished and status == RUN.FAILED and counter(R, 'settled') < n then
    unfinish(R)
  end
  return run_status, callback, finished
end

-- Where a node's success stands before anything is written: 'expired' (the run's state
-- is missing: nothing may be applied), 'compacted' (the run finished: only ack),
-- 'missing' (the run has no such node) or the node's current status. Split from
-- plan_complete so that complete_node.lua and settle.lua ack only an applicable success.
local function completion_check(R, id, now)
  if not live(R, now) then
    return 'expired'
  end
  if compacted(R) then
    return 'compacted'
  end
  return redis.call('HGET', R.nodes, id) or 'missing'
end

-- mirrors core.run.plan_begin (begin_node.lua): say whether a fetched job of node `id`
-- runs and mark it running if so; a node that runs (a retry of a running one too) counts
-- one more attempt, "attempts:<node>" (core.run.RunState.attempts). Returns 'run', 'skip'
-- (also for a compacted run), 'expired' (no run state) or an error reply for an unknown node.
local function plan_begin(R, P, run_id, id, now)
  if not live(R, now) then
    return 'expired'
  end
  if compacted(R) then
    return 'skip'
  end
  local current = redis.call('HGET', R.nodes, id)
  if not current then
    return redis.error_reply('run ' .. run_id .. ' has no node ' .. id)
  end
  local status = redis.call('HGET', R.run, 'status')
  local decision = 'run'
  if current == NODE.SUCCEEDED or status == RUN.CANCELLED or current == NODE.CANCELLED then
    decision = 'skip'
  elseif current == NODE.DEAD then
    -- runs again only once revived; an allowed failure retried by hand runs but stays
    -- dead until it succeeds (its successors were counted when it died)
    if not gnode(R, id).allow then
      decision = 'skip'
    end
  elseif current ~= NODE.RUNNING then
    set_node(R, id, NODE.RUNNING)
  end
  if decision == 'run' then
    redis.call('HINCRBY', R.run, 'attempts:' .. id, 1)
  end
  settle(R, P, now, nil, nil, false)
  return decision
end

-- mirrors core.run.plan_complete (complete_node.lua, settle.lua), once completion_check
-- said `current` (neither 'expired' nor 'missing'): mark the node succeeded once,
-- decrement its successors' barriers, release those at zero, finish the run (compacting
-- it, clearing its memory) and push its success callback. Returns the transition as JSON.
local function plan_complete(R, P, run_id, id, now, current)
  if current == 'compacted' then
    return outcome(nil, nil, false)
  end
  if current == NODE.SUCCEEDED then
    settle(R, P, now, nil, nil, false)  -- idempotent: a redelivered step counts once
    return outcome(nil, nil, false)
  end
  local allow = gnode(R, id).allow
  set_node(R, id, NODE.SUCCEEDED)
  if current == NODE.DEAD and allow then
    -- an allowed failure already released its successors when it died
    settle(R, P, now, nil, nil, false)
    return outcome(nil, nil, false)
  end
  local status, callback, finished = finish_node(R, P, run_id, id, now,
                                                 current == NODE.DEAD and not allow)
  settle(R, P, now, status, callback, finished)
  return outcome(status, callback, finished)
end

-- mirrors core.run.plan_fail (fail_node.lua, settle.lua): mark the node dead, keep its
-- error (JSON [error_class, error_message]) as "error:<node>", skip its dependants, mark
-- the run failed and push the failure callback once; an allow-failure node lets its
-- successors run instead. A missing or compacted run is left alone. Returns the
-- transition as JSON.
local function plan_fail(R, P, run_id, id, now, error_json)
  if not live(R, now) or compacted(R) then
    return outcome(nil, nil, false)
  end
  local current = redis.call('HGET', R.nodes, id)
  if not current or current == NODE.SUCCEEDED or current == NODE.DEAD then
    settle(R, P, now, nil, nil, false)
    return outcome(nil, nil, false)
  end
  set_node(R, id, NODE.DEAD)
  redis.call('HSET', R.run, 'error:' .. id, error_json)
  if gnode(R, id).allow then
    local status, callback, finished = finish_node(R, P, run_id, id, now, false)
    settle(R, P, now, status, callback, finished)
    return outcome(status, callback, finished)
  end
  for d in pairs(descendants(R, id)) do
    if redis.call('HGET', R.nodes, d) == NODE.PENDING then
      set_node(R, d, NODE.SKIPPED)
    end
  end
  local run_status = redis.call('HGET', R.run, 'status')
  local all_settled = counter(R, 'settled') == counter(R, 'n')
  local status, callback, finished = nil, nil, false
  if run_status == RUN.RUNNING then
    status = RUN.FAILED
    if redis.call('HGET', R.run, 'failure_fired') ~= '1' then
      callback = 'failure'
    end
    finished = all_settled
  else
    finished = all_settled and not redis.call('HGET', R.run, 'finished_at')
  end
  settle(R, P, now, status, callback, finished)
  return outcome(status, callback, finished)
end

-- mirrors core.run.plan_revive (retry_dead.lua): a dead node retried by hand is queued
-- again (its job is pushed by the caller), the nodes only it blocked are un-skipped and
-- the run is running again when no other node blocks it. A missing or compacted run, or
-- a node that is not a blocking dead node of a live run, is left as it is.
local function plan_revive(R, P, id, now)
  if not live(R, now) or compacted(R) then
    return
  end
  local current = redis.call('HGET', R.nodes, id)
  local status = redis.call('HGET', R.run, 'status')
  if current ~= NODE.DEAD or status == RUN.CANCELLED or gnode(R, id).allow then
    -- nothing to revive (an allowed failure already let its successors run)
    settle(R, P, now, nil, nil, false)
    return
  end
  set_node(R, id, NODE.QUEUED)
  unskip(R)
  unfinish(R)  -- the run has work again (Transition.reopened)
  local run_status = nil
  if counter(R, 'blocking') == 0 then
    run_status = RUN.RUNNING
  end
  settle(R, P, now, run_status, nil, false)
end

-- mirrors core.run.plan_cancel (cancel_run.lua): nodes not yet running (STOPPABLE) are
-- cancelled and the scheduled or retry entries of the run's nodes (jids
-- "<run_id>.<node>") removed; running nodes finish but release nothing; the run is
-- compacted to its summary (settle). Returns 1 cancelled, 0 already succeeded or
-- cancelled, -1 no run state.
local function plan_cancel(R, P, run_id, now)
  if not live(R, now) then
    return -1
  end
  if compacted(R) then
    return 0
  end
  local status = redis.call('HGET', R.run, 'status')
  if status == RUN.SUCCEEDED or status == RUN.CANCELLED then
    settle(R, P, now, nil, nil, false)
    return 0
  end
  local all = redis.call('HGETALL', R.nodes)
  for i = 1, #all, 2 do
    if STOPPABLE[all[i + 1]] then
      set_node(R, all[i], NODE.CANCELLED)
    end
    for _, kind in ipairs({'schedule', 'retry'}) do
      set_remove(P, kind, run_id .. '.' .. all[i])
    end
  end
  settle(R, P, now, RUN.CANCELLED, nil, true)
  return 1
end

-- ---- the other parts of a settlement (settle.lua) ----

-- Compare-and-delete a lock: only the token that took it releases it (release_lock.lua,
-- settle.lua).
local function release_if_held(key, token)
  if redis.call('GET', key) == token then
    return redis.call('DEL', key)
  end
  return 0
end

-- settle's part for a job that stores its result (Settlement.tracked): its info record
-- "jobinfo:<jid>" (a hash) gets `state` and, when it ended ('succeeded', 'failed'),
-- finished_at = now, or, for a retry ('retrying'), its retry count; an ended job's result
-- record replaces any earlier one as the one-element list "result:<jid>" (waiters rotate
-- it with BRPOPLPUSH, never consuming it). Both expire `ttl` seconds from now.
local function store_result(P, jid, state, record, retry_count, now, ttl)
  local info = P .. 'jobinfo:' .. jid
  if state == 'retrying' then
    redis.call('HSET', info, 'state', state, 'retry_count', retry_count)
  else
    redis.call('HSET', info, 'state', state, 'finished_at', now)
  end
  redis.call('EXPIRE', info, ttl)
  if record ~= '' then
    local result = P .. 'result:' .. jid
    redis.call('DEL', result)
    redis.call('RPUSH', result, record)
    redis.call('EXPIRE', result, ttl)
  end
end

-- Add `by` to the counter "stat:<name>" (never expires) and to its minute and day buckets
-- "stat:<name>:<minute>", "stat:<name>:<day>", each given `minute_ttl` / `day_ttl` seconds.
local function count_stat(P, name, by, minute, day, minute_ttl, day_ttl)
  if tonumber(by) <= 0 then
    return
  end
  local base = P .. 'stat:' .. name
  redis.call('INCRBY', base, by)
  for _, bucket in ipairs({{minute, minute_ttl}, {day, day_ttl}}) do
    -- a bucket lives its TTL from its first count: only the INCRBY that creates it expires
    if redis.call('INCRBY', base .. ':' .. bucket[1], by) == tonumber(by) then
      redis.call('EXPIRE', base .. ':' .. bucket[1], bucket[2])
    end
  end
end

-- The run keys of run `run_id` (the layout of run_keys, built from P: same hash tag).
local function keys_of_run(P, run_id)
  local base = P .. 'run:' .. run_id
  return {run = base, nodes = base .. ':nodes', remaining = base .. ':remaining',
          graph = base .. ':graph', payloads = base .. ':payloads', memory = base .. ':memory'}
end

-- Begin the workflow step of a job just fetched, in the fetching call (core.ports.Delivery
-- .begun): '' for a plain job or a text that does not parse (the worker decodes it and
-- buries it), else plan_begin's decision, with 'missing' for a node the run lacks.
local function begin_fetched(P, raw, now)
  if not string.find(raw, '"run_id":', 1, true) then
    return ''
  end
  local ok, job = pcall(cjson.decode, raw)
  if not ok or type(job) ~= 'table' then
    return ''
  end
  local run_id, id = job.run_id, job.node_id
  if type(run_id) ~= 'string' or type(id) ~= 'number' or id < 0 or id ~= math.floor(id)
      or id >= 2 ^ 53 then
    return ''
  end
  local decision = plan_begin(keys_of_run(P, run_id), P, run_id, string.format('%d', id), now)
  if type(decision) == 'table' then
    return 'missing'
  end
  return decision
end

-- A job taken from queue `queue` uses up one wake token of that queue (unless the caller's
-- BLPOP already took it), so tokens wake only as many blocked fetches as there are jobs
-- nobody took yet (push_job adds one per job).
local function use_token(P, queue)
  redis.call('LPOP', P .. 'wake:' .. queue)
end

-- What taking job `raw` from the queue list `queue_key` entails (fetch.lua, take_one): its
-- wake token is used up, unless `credited` (the caller's BLPOP took it), and its workflow
-- step is begun when `begin_now` is not ''. Returns begin_fetched's answer, or ''.
local function on_taken(P, queue_key, raw, begin_now, credited)
  if not credited then
    use_token(P, string.sub(queue_key, #P + 7))
  end
  if begin_now == '' then
    return ''
  end
  return begin_fetched(P, raw, begin_now)
end

-- ---- fleet-wide limits per key (core/limits.py; adapters/memory/_limits.py is the twin) ----
-- Keys built from P: "limits" (hash: each key in use -> "concurrency|<max>" or
-- "rate|<limit>|<per_s>", the index the admin view reads), "limit:<key>:running" (hash:
-- jid -> the worker holding one of the key's slots), "limit:<key>:parked" (list of
-- "queue|payload", the next to release first) and "limit:<key>:starts" (sorted set
-- "<jid>@<time>" by start time, expiring one window after the newest start).

local function present(value)  -- a JSON null reads as an absent field
  if value == cjson.null then
    return nil
  end
  return value
end

-- A whole number >= 1 below 2^53 (core.limits.MAX_COUNT), else nil.
local function limit_count(value)
  if type(value) ~= 'number' or value ~= value or value < 1 or value >= MAX_COUNT
      or value ~= math.floor(value) then
    return nil
  end
  return value
end

-- mirrors core.limits.limit_of: the limit job text `raw` declares, as a table {key, jid,
-- spec, and max (concurrency) or rate and per (rate)}, or nil: no limit_key in the text
-- (an unlimited job is never decoded here), not an object, or fields that make no limit
-- (that job is handed out unlimited, and the worker's strict decode buries it).
local function limit_of(raw)
  if not string.find(raw, '"limit_key"', 1, true) then
    return nil
  end
  local ok, job = pcall(cjson.decode, raw)
  if not ok or type(job) ~= 'table' then
    return nil
  end
  local key, jid = present(job.limit_key), present(job.jid)
  if type(key) ~= 'string' or key == '' or type(jid) ~= 'string' then
    return nil
  end
  local max, rate, per = present(job.limit_max), present(job.limit_rate), present(job.limit_per_s)
  if max ~= nil and rate == nil and per == nil then
    max = limit_count(max)
    if not max then
      return nil
    end
    return {key = key, jid = jid, max = max, spec = 'concurrency|' .. string.format('%d', max)}
  end
  if max == nil and rate ~= nil and per ~= nil then
    rate = limit_count(rate)
    if not rate or type(per) ~= 'number' or not (per > 0) or per >= math.huge then
      return nil
    end
    return {key = key, jid = jid, rate = rate, per = per,
            spec = 'rate|' .. string.format('%d', rate) .. '|' .. num(per)}
  end
  return nil
end

-- Whether job `raw`, just moved from queue `queue` to the worker's list `held`, may be
-- handed to `worker` at `now` (the twin of LimitOps._admit). A job without a limit may. A
-- concurrency job takes a slot when its key has fewer than its max running; else it is
-- parked (leaves `held` for the key's parked list: not run, not counted, no retry used).
-- A rate job records its start when its key's window (the last per_s seconds) has fewer
-- than its limit; else it leaves `held` for the scheduled set, due when the oldest start
-- leaves the window. The job that takes a key's first slot, or starts its window, enters
-- the key in the index with its limit: a key stays there while anything holds it (only
-- free_slot and limit_view.lua take it out, once nothing does).
local function admit(P, raw, queue, held, worker, now)
  local L = limit_of(raw)
  if not L then
    return true
  end
  local base = P .. 'limit:' .. L.key
  if L.max then
    local running = base .. ':running'
    local count = redis.call('HLEN', running)
    if count < L.max then
      if count == 0 then
        redis.call('HSET', P .. 'limits', L.key, L.spec)
      end
      redis.call('HSET', running, L.jid, worker)
      return true
    end
    redis.call('LREM', held, -1, raw)
    redis.call('RPUSH', base .. ':parked', queue .. '|' .. raw)
    return false
  end
  local starts = base .. ':starts'
  redis.call('ZREMRANGEBYSCORE', starts, '-inf', num(tonumber(now) - L.per))
  local count = redis.call('ZCARD', starts)
  if count < L.rate then
    if count == 0 then
      redis.call('HSET', P .. 'limits', L.key, L.spec)
    end
    redis.call('ZADD', starts, now, L.jid .. '@' .. now)
    -- a window's worth of milliseconds plus a second, at most ~31 years (an integer Redis
    -- reads whatever per_s a payload carries)
    redis.call('PEXPIRE', starts, string.format('%d', math.min(math.ceil(L.per * 1000) + 1000,
                                                               1e12)))
    return true
  end
  local oldest = redis.call('ZRANGE', starts, 0, 0, 'WITHSCORES')
  redis.call('LREM', held, -1, raw)
  set_add(P, 'schedule', L.jid, num(tonumber(oldest[2]) + L.per), queue, raw)
  return false
end

-- Free the slot of job `jid` under concurrency key `key` if `worker` holds it, and release
-- the oldest parked job of the key to the head of its queue (with a wake token); a key
-- left with nothing running or parked leaves the index. Returns 1 if a slot was freed.
local function free_slot(P, key, jid, worker)
  local base = P .. 'limit:' .. key
  local running = base .. ':running'
  if redis.call('HGET', running, jid) ~= worker then
    return 0
  end
  redis.call('HDEL', running, jid)
  local entry = redis.call('LPOP', base .. ':parked')
  if entry then
    local queue, job = split_entry(entry)
    push_job(P, queue, job, true)
  elseif redis.call('HLEN', running) == 0 then
    redis.call('HDEL', P .. 'limits', key)
  end
  return 1
end

-- Job `raw` has left `worker`'s hands (settled, requeued, recovered, discarded): free its
-- concurrency slot, if it holds one (the twin of LimitOps._free). Call it only when the
-- job was really taken out of the worker's list.
local function limit_free(P, raw, worker)
  local L = limit_of(raw)
  if L and L.max then
    free_slot(P, L.key, L.jid, worker)
  end
end

-- Move at most one job from the first non-empty queue to this worker's in-progress list
-- (fetch.lua with limit 1), using up its wake token, and begin its workflow step when
-- `begin_now` is not '' (on_taken). A job its limit refuses (admit) is parked or
-- scheduled and the next one tried, at most PARK_PER_FETCH of them; when that many were
-- refused, a wake token is left on the queue so a fetcher goes on at once. `first` is
-- the index in KEYS of the first (queue, in-progress) pair. Returns the pair's number
-- (1-based), the job and what begin_fetched said, or nil.
local function take_one(P, first, begin_now, worker, now)
  local refused = 0
  for i = first, #KEYS, 2 do
    local queue = string.sub(KEYS[i], #P + 7)
    while refused < PARK_PER_FETCH do
      local raw = redis.call('LMOVE', KEYS[i], KEYS[i + 1], 'LEFT', 'RIGHT')
      if not raw then
        break
      end
      if admit(P, raw, queue, KEYS[i + 1], worker, now) then
        -- recovery finds held lists through the queue-name set (as fetch.lua)
        for j = first, #KEYS, 2 do
          redis.call('SADD', P .. 'queues', string.sub(KEYS[j], #P + 7))
        end
        return (i - first) / 2 + 1, raw, on_taken(P, KEYS[i], raw, begin_now, false)
      end
      use_token(P, queue)
      refused = refused + 1
      if refused == PARK_PER_FETCH and redis.call('LLEN', KEYS[i]) > 0 then
        wake_queue(P, queue)
      end
    end
  end
  return nil
end

-- ---- batches: one function per function of core/batch.py, same names after "batch_" ----
-- A batch's keys (built from P, so in the namespace's slot): the hash "batch:<bid>" (its
-- fields, the times its callbacks fired, "cb:<callback>" = "queue|payload" and
-- "opt:<callback>" = JSON options, the step that opened it), ":pending" (set of the jids
-- that have not succeeded), ":failures" (hash jid -> JSON [error class, message]),
-- ":dead" (set) and ":children" (list of child bids).

local function batch_keys(P, bid)
  local base = P .. 'batch:' .. bid
  return {hash = base, pending = base .. ':pending', failures = base .. ':failures',
          dead = base .. ':dead', children = base .. ':children'}
end

-- The batch exists and has not expired; an expired one is deleted here.
local function batch_live(B, now)
  local expires = redis.call('HGET', B.hash, 'expires_at')
  if not expires then
    return false
  end
  if tonumber(expires) <= tonumber(now) then
    redis.call('DEL', B.hash, B.pending, B.failures, B.dead, B.children)
    return false
  end
  return true
end

-- Set the batch's logical expiry and its keys' TTL (plus a minute, as runs have).
local function batch_expire(B, now, expires)
  redis.call('HSET', B.hash, 'expires_at', num(expires))
  local ttl = math.ceil(expires - tonumber(now)) + 60
  for _, key in ipairs({B.hash, B.pending, B.failures, B.dead, B.children}) do
    redis.call('EXPIRE', key, ttl)
  end
end

-- A key the batch has just created gets the batch's TTL.
local function batch_same_ttl(B, key)
  local ttl = redis.call('TTL', B.hash)
  if ttl > 0 then
    redis.call('EXPIRE', key, ttl)
  end
end

-- mirrors core.batch.check: fire complete and success if their condition holds now.
local function batch_check(B, now)
  local fired = {}
  local f = redis.call('HMGET', B.hash, 'complete_at', 'success_at', 'kids_incomplete',
                       'kids_unsucceeded')
  local pending = redis.call('SCARD', B.pending)
  if not f[1] and pending == redis.call('HLEN', B.failures) and tonumber(f[3] or '0') == 0 then
    redis.call('HSET', B.hash, 'complete_at', now)
    fired[#fired + 1] = CALLBACK.COMPLETE
  end
  if not f[2] and pending == 0 and tonumber(f[4] or '0') == 0 then
    redis.call('HSET', B.hash, 'success_at', now)
    fired[#fired + 1] = CALLBACK.SUCCESS
  end
  return fired
end

-- mirrors core.batch._death
local function batch_death(B, now)
  if redis.call('HSETNX', B.hash, 'death_at', now) == 1 then
    return {CALLBACK.DEATH}
  end
  return {}
end

-- mirrors core.batch.job_ended: count one ending of member job `jid` (`err` is JSON
-- [error class, message]); returns the callbacks fired, in order.
local function batch_job_ended(B, jid, event, err, now)
  if redis.call('SISMEMBER', B.pending, jid) == 0 then
    return {}
  end
  if event == BATCH.SUCCEEDED then
    redis.call('SREM', B.pending, jid)
    redis.call('HDEL', B.failures, jid)
    redis.call('SREM', B.dead, jid)
    return batch_check(B, now)
  end
  redis.call('HSET', B.failures, jid, err)
  batch_same_ttl(B, B.failures)
  local fired = {}
  if event == BATCH.DIED then
    redis.call('SADD', B.dead, jid)
    batch_same_ttl(B, B.dead)
    fired = batch_death(B, now)
  end
  for _, callback in ipairs(batch_check(B, now)) do
    fired[#fired + 1] = callback
  end
  return fired
end

-- mirrors core.batch.add_callback: a child's callback job `jid` joins its parent B.
local function batch_add_callback(B, jid)
  redis.call('HINCRBY', B.hash, 'total', 1)
  redis.call('SADD', B.pending, jid)
  batch_same_ttl(B, B.pending)
end

-- mirrors core.batch.child_fired: a child fired `callback`; what the parent fires in turn.
local function batch_child_fired(B, callback, now)
  if callback == CALLBACK.COMPLETE then
    redis.call('HINCRBY', B.hash, 'kids_incomplete', -1)
  elseif callback == CALLBACK.SUCCESS then
    redis.call('HINCRBY', B.hash, 'kids_unsucceeded', -1)
  else
    return batch_death(B, now)
  end
  return batch_check(B, now)
end

-- The error a step dies of when a job of its batch died (adapters/memory/_batches.py
-- _death_error): the first dead jid in order, with its error.
local function batch_death_error(B, bid)
  local dead = redis.call('SMEMBERS', B.dead)
  table.sort(dead)
  if #dead > 0 then
    local err = cjson.decode(redis.call('HGET', B.failures, dead[1]) or '["",""]')
    return cjson.encode({'BatchJobDied', 'batch ' .. bid .. ': job ' .. dead[1] .. ' died ('
                         .. tostring(err[1]) .. ': ' .. tostring(err[2]) .. ')'})
  end
  return cjson.encode({'BatchJobDied', 'batch ' .. bid .. ': a job of a child batch died'})
end

-- The step that opened batch B waits for it: its success may complete the step (the
-- run field "await:<node>" counts the step's batches still running), a death kills it.
-- Returns the run's transition as JSON, or '' when the step is not touched.
local function batch_fire_node(P, B, bid, callback, now)
  local f = redis.call('HMGET', B.hash, 'node_run', 'node_id', 'node_waits')
  if not f[1] or f[3] ~= '1' then
    return ''
  end
  local R = keys_of_run(P, f[1])
  if callback == CALLBACK.DEATH then
    return plan_fail(R, P, f[1], f[2], now, batch_death_error(B, bid))
  elseif callback == CALLBACK.SUCCESS then
    if live(R, now) and redis.call('HINCRBY', R.run, 'await:' .. f[2], -1) <= 0 then
      redis.call('HDEL', R.run, 'await:' .. f[2])
      local current = completion_check(R, f[2], now)
      if current ~= 'expired' and current ~= 'missing' then
        return plan_complete(R, P, f[1], f[2], now, current)
      end
    end
  end
  return ''
end

-- Push the callbacks of batch `bid` that fired (a child's join its parent first, all of
-- them, so the parent cannot fire before they ran), then count them in its parent, and so
-- on up (adapters/memory/_batches.py _fire). Returns a run transition when a step moved.
local batch_fire
batch_fire = function(P, bid, fired, now)
  local B = batch_keys(P, bid)
  local parent = redis.call('HGET', B.hash, 'parent')
  local PB = nil
  if parent and parent ~= '' then
    PB = batch_keys(P, parent)
    if not batch_live(PB, now) then
      PB = nil  -- an expired parent is gone: it fires nothing
    end
  end
  for _, callback in ipairs(fired) do
    local entry = redis.call('HGET', B.hash, 'cb:' .. callback)
    if entry then
      local queue, raw = split_entry(entry)
      raw = stamp(raw, 'enqueued_at', num(tonumber(now)))
      if PB then  -- a child's callback runs as part of its parent
        raw = stamp(raw, 'batch_id', cjson.encode(parent))
        batch_add_callback(PB, cjson.decode(raw).jid)
      end
      push_job(P, queue, raw, false)
    end
    if callback == CALLBACK.SUCCESS then
      batch_expire(B, now, tonumber(now) + tonumber(redis.call('HGET', B.hash, 'linger_s')))
    end
  end
  local transition = ''
  for _, callback in ipairs(fired) do
    local moved = batch_fire_node(P, B, bid, callback, now)
    if PB then
      local up = batch_fire(P, parent, batch_child_fired(PB, callback, now), now)
      if up ~= '' then
        moved = up
      end
    end
    if moved ~= '' then
      transition = moved
    end
  end
  return transition
end

-- settle's batch part: count a member job's ending (`event` 'succeeded', 'failed' or
-- 'died') in batch `bid`, push what fires.
local function batch_settled(P, bid, jid, event, err, now)
  local B = batch_keys(P, bid)
  if not batch_live(B, now) then
    return ''
  end
  return batch_fire(P, bid, batch_job_ended(B, jid, event, err, now), now)
end

-- settle's part for a step that succeeded after opening batches (`bids` JSON list): it
-- dies now if a job of one died, completes now if all succeeded, else waits
-- ("await:<node>" = how many are still running). Returns the run's transition as JSON.
local function batch_await(P, R, run_id, id, bids, now, current)
  local waiting, dead = 0, nil
  for _, bid in ipairs(cjson.decode(bids)) do
    local B = batch_keys(P, bid)
    if batch_live(B, now) then
      redis.call('HSET', B.hash, 'node_waits', '1')
      local f = redis.call('HMGET', B.hash, 'death_at', 'success_at')
      if f[1] and not dead then
        dead = bid
      elseif not f[2] then
        waiting = waiting + 1
      end
    end
  end
  if dead then
    return plan_fail(R, P, run_id, id, now, batch_death_error(batch_keys(P, dead), dead))
  end
  if waiting > 0 then
    redis.call('HSET', R.run, 'await:' .. id, waiting)
    return outcome(nil, nil, false)
  end
  return plan_complete(R, P, run_id, id, now, current)
end
