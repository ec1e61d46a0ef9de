-- admin_kill.lua: move one retry entry to the dead set now (the admin API's "kill"),
-- trimming the dead set by size and age as every burial does; a member job of a batch
-- counts as dead there (its death callback may fire).
-- KEYS[1] the retry set (its ':jobs' hash and the dead set share the slot)
-- ARGV[1] P, ARGV[2] the entry's key (jid), ARGV[3] now (s), ARGV[4] max dead jobs,
-- ARGV[5] dead ttl (s)
-- returns: 1 moved, 0 the entry is not in the retry set
local P, key, now = ARGV[1], ARGV[2], ARGV[3]
local entry = redis.call('HGET', P .. 'retry:jobs', key)
set_remove(P, 'retry', key)
if not entry then
  return 0
end
local queue, raw = split_entry(entry)
if string.sub(raw, -1) == '}' then
  raw = stamp(stamp(raw, 'dead', 'true'), 'dead_reason', '"killed"')
end
add_dead(P, key, queue, raw, now, ARGV[4], ARGV[5])
-- a killed member job died, for its batch (_lib.lua batch_settled)
local ok, doc = pcall(cjson.decode, raw)
if ok and type(doc) == 'table' and type(doc.batch_id) == 'string' then
  local function text(value)
    return type(value) == 'string' and value or ''
  end
  batch_settled(P, doc.batch_id, text(doc.jid), BATCH.DIED,
                cjson.encode({text(doc.error_class), text(doc.error_message)}), now)
end
return 1
