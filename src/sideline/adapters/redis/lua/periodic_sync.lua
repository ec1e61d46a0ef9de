-- periodic_sync.lua: reconcile the stored periodic entries with the code's
-- (core.ports.PeriodicStore.sync_periodic).
-- KEYS[1] the set of entry names ("periodic"); each entry's state is the hash
--   P .. 'periodic:' .. name (fields definition, fingerprint, last_tick_ms, paused,
--   last_fired_at, last_jid)
-- ARGV[1] P, ARGV[2] now in ms, ARGV[3] JSON list of the job names this app declares,
-- ARGV[4] JSON list of [name, fingerprint, definition] of the code's entries
-- returns: {entries stored or changed, entries removed}
local P, now_ms = ARGV[1], ARGV[2]
local owned = {}
for _, job in ipairs(cjson.decode(ARGV[3])) do
  owned[job] = true
end
local given, stored, removed = {}, 0, 0
for _, entry in ipairs(cjson.decode(ARGV[4])) do
  local name, fingerprint, definition = entry[1], entry[2], entry[3]
  given[name] = true
  local key = P .. 'periodic:' .. name
  if redis.call('HGET', key, 'fingerprint') ~= fingerprint then
    redis.call('HSET', key, 'definition', definition, 'fingerprint', fingerprint,
               'last_tick_ms', now_ms)
    redis.call('SADD', KEYS[1], name)
    stored = stored + 1
  end
end
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not given[name] then
    local key = P .. 'periodic:' .. name
    local ok, definition = pcall(cjson.decode, redis.call('HGET', key, 'definition') or '')
    local job = ok and type(definition) == 'table' and definition.job or nil
    if job == nil or owned[job] then
      redis.call('DEL', key)
      redis.call('SREM', KEYS[1], name)
      removed = removed + 1
    end
  end
end
return {stored, removed}
