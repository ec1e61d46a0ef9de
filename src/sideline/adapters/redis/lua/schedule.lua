-- schedule.lua: add a job to the scheduled set.
-- KEYS[1] the scheduled set (P .. 'schedule')
-- ARGV[1] P, ARGV[2] jid, ARGV[3] due time (s), ARGV[4] queue, ARGV[5] payload
-- returns: 1
set_add(ARGV[1], 'schedule', ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return 1
