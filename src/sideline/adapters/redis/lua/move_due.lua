-- move_due.lua: move due jobs of the scheduled and retry sets to their queues, earliest first.
-- KEYS[1] the scheduled set (routes the call; the retry set P .. 'retry' shares its slot)
-- ARGV[1] P, ARGV[2] now (s), ARGV[3] limit
-- returns: the number of jobs moved
local P, now, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local due = {}
for _, kind in ipairs({'schedule', 'retry'}) do
  local items = redis.call('ZRANGEBYSCORE', P .. kind, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #items, 2 do
    due[#due + 1] = {kind = kind, jid = items[i], at = tonumber(items[i + 1])}
  end
end
-- earliest first; ties by set then jid, so every adapter moves them in the same order
table.sort(due, function(a, b)
  if a.at ~= b.at then return a.at < b.at end
  if a.kind ~= b.kind then return a.kind < b.kind end
  return a.jid < b.jid
end)
local moved = 0
for _, item in ipairs(due) do
  if moved >= limit then
    break
  end
  local entry = redis.call('HGET', P .. item.kind .. ':jobs', item.jid)
  set_remove(P, item.kind, item.jid)
  if entry then
    local queue, raw = split_entry(entry)
    push_job(P, queue, stamp(raw, 'enqueued_at', now), false)
    moved = moved + 1
  end
end
return moved
