-- batch_push.lua: store new batches, count and push their jobs, fire what fires
-- (core.ports.BatchStore.push_batches), all or nothing: every check comes first.
-- KEYS[1] the recent-batches index (routes the call to the namespace's slot)
-- ARGV[1] P, ARGV[2] now (s), ARGV[3] the index size, ARGV[4] the pushes as JSON: a list
--   of {bid, new (false, or {description, parent ('' for none), callbacks {callback:
--   "queue|payload"}, options {callback: JSON}, ttl_s, linger_s, node_run, node_id}),
--   jids (every job's), jobs [[queue, payload]...], scheduled [[jid, at, queue, payload]...]}
-- returns: {'ok'}, or {'finished', bid} / {'unknown', bid} / {'exists', bid} and nothing done
local P, now = ARGV[1], ARGV[2]
local pushes = cjson.decode(ARGV[4])
local new = {}
for _, push in ipairs(pushes) do
  if push.new then
    new[push.bid] = true
  end
end
local function refuse(bid)
  local B = batch_keys(P, bid)
  if not batch_live(B, now) then
    return {'unknown', bid}
  end
  if redis.call('HEXISTS', B.hash, 'complete_at') == 1 then
    return {'finished', bid}
  end
  return nil
end
for _, push in ipairs(pushes) do
  local refused = nil
  if push.new then
    if batch_live(batch_keys(P, push.bid), now) then
      refused = {'exists', push.bid}
    elseif push.new.parent ~= '' and not new[push.new.parent] then
      refused = refuse(push.new.parent)
    end
  else
    refused = refuse(push.bid)
  end
  if refused then
    return refused
  end
end
for _, push in ipairs(pushes) do
  local B = batch_keys(P, push.bid)
  local spec = push.new
  if spec then
    redis.call('HSET', B.hash, 'description', spec.description, 'parent', spec.parent,
               'created_at', now, 'total', 0, 'kids_incomplete', 0, 'kids_unsucceeded', 0,
               'ttl_s', spec.ttl_s, 'linger_s', spec.linger_s, 'expires_at', now)
    for callback, entry in pairs(spec.callbacks) do
      redis.call('HSET', B.hash, 'cb:' .. callback, entry)
    end
    for callback, options in pairs(spec.options) do
      redis.call('HSET', B.hash, 'opt:' .. callback, options)
    end
    if spec.node_run ~= '' then
      redis.call('HSET', B.hash, 'node_run', spec.node_run, 'node_id', spec.node_id)
    end
    redis.call('ZADD', KEYS[1], now, push.bid)
    redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[3]) - 1)
    if spec.parent ~= '' then  -- mirrors core.batch.add_child
      local PB = batch_keys(P, spec.parent)
      redis.call('RPUSH', PB.children, push.bid)
      batch_same_ttl(PB, PB.children)
      redis.call('HINCRBY', PB.hash, 'kids_incomplete', 1)
      redis.call('HINCRBY', PB.hash, 'kids_unsucceeded', 1)
      local pf = redis.call('HMGET', PB.hash, 'expires_at', 'ttl_s', 'success_at')
      if not pf[3] then  -- a new child keeps its parent alive too
        batch_expire(PB, now, math.max(tonumber(pf[1]), tonumber(now) + tonumber(pf[2])))
      end
    end
  end
  -- mirrors core.batch.add_jobs
  redis.call('HINCRBY', B.hash, 'total', #push.jids)
  for first = 1, #push.jids, 1000 do  -- chunks: unpack is bounded by Lua's stack
    redis.call('SADD', B.pending, unpack(push.jids, first, math.min(first + 999, #push.jids)))
  end
  for _, job in ipairs(push.jobs) do
    push_job(P, job[1], job[2], false)
  end
  for _, job in ipairs(push.scheduled) do
    set_add(P, 'schedule', job[1], job[2], job[3], job[4])
  end
  local f = redis.call('HMGET', B.hash, 'expires_at', 'ttl_s', 'success_at')
  if not f[3] then
    batch_expire(B, now, math.max(tonumber(f[1]), tonumber(now) + tonumber(f[2])))
  end
end
for i = #pushes, 1, -1 do  -- children first: theirs fire up into parents
  local bid = pushes[i].bid
  batch_fire(P, bid, batch_check(batch_keys(P, bid), now), now)
end
return {'ok'}
