-- forget_worker.lua: remove a worker from the registry (its jobs were recovered, or it
-- stopped holding none), and free every concurrency slot still recorded for it: it holds
-- no job, so such a slot can only be a leak (the safety net behind limit_free; each slot
-- freed releases one parked job of its key, _lib.lua free_slot).
-- KEYS[1] the workers sorted set, KEYS[2] the worker's info hash
-- ARGV[1] P, ARGV[2] worker id
-- Keys built from P: limits (the index of keys in use) and, per concurrency key in it,
--   limit:<key>:running and limit:<key>:parked (and a released job's queue)
-- returns: the number of slots freed
local P, worker = ARGV[1], ARGV[2]
redis.call('ZREM', KEYS[1], worker)
redis.call('DEL', KEYS[2])
-- keys and jids in sorted order: the parked jobs released go to their queue heads in the
-- same order on every adapter (adapters/memory/_limits.py _forget_slots)
local index = redis.call('HGETALL', P .. 'limits')
local keys = {}
for i = 1, #index, 2 do
  if string.sub(index[i + 1], 1, 12) == 'concurrency|' then
    keys[#keys + 1] = index[i]
  end
end
table.sort(keys)
local freed = 0
for _, key in ipairs(keys) do
  local slots = redis.call('HGETALL', P .. 'limit:' .. key .. ':running')
  local jids = {}
  for j = 1, #slots, 2 do
    if slots[j + 1] == worker then
      jids[#jids + 1] = slots[j]
    end
  end
  table.sort(jids)
  for _, jid in ipairs(jids) do
    freed = freed + free_slot(P, key, jid, worker)
  end
end
return freed
