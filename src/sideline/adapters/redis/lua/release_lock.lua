-- release_lock.lua: compare-and-delete, so a worker never releases someone else's lock.
-- KEYS[1] the lock key
-- ARGV[1] the token the lock was taken with
-- returns: 1 if released, 0 if the lock is held by another token or expired
return release_if_held(KEYS[1], ARGV[1])
