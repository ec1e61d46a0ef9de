-- admin_kill.lua: move one retry entry to the dead set now (the admin API's "kill"),
-- trimming the dead set by size and age as every burial does.
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
return 1
