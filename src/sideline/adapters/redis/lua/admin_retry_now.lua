-- admin_retry_now.lua: push one scheduled or retry entry to its queue now (the admin API's
-- "retry now"), removing it from its set.
-- KEYS[1] the set (P .. 'schedule' or P .. 'retry'; its ':jobs' hash shares the slot)
-- ARGV[1] P, ARGV[2] the set's name ('schedule' or 'retry'), ARGV[3] the entry's key (jid),
-- ARGV[4] now (s)
-- returns: 1 pushed, 0 the entry is not in the set
local P, kind, key, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local entry = redis.call('HGET', P .. kind .. ':jobs', key)
set_remove(P, kind, key)
if not entry then
  return 0
end
local queue, raw = split_entry(entry)
if string.sub(raw, -1) == '}' then
  raw = stamp(raw, 'enqueued_at', now)
end
push_job(P, queue, raw, false)
return 1
