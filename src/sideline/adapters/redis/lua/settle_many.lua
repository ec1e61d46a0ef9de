-- settle_many.lua: several settles (settle.lua) in one call, one after the other, each as
-- if it were its own call: its own KEYS and ARGV, the per-call state of _lib.lua emptied
-- before it (begin_call), and an error in one (a run without the node, a command that
-- fails) answered as that settle's error reply without touching the others. A function of
-- the library only (_scripts.py library): it runs settle's body, body_settle.
-- KEYS: every settle's keys, one settle after the other
-- ARGV[1] the number of settles n; ARGV[2i], ARGV[2i+1] (i = 1..n) how many keys and
--   arguments settle i has; then every settle's arguments, one settle after the other
-- returns: one reply per settle, in order: what settle.lua returns, or its error reply
local all_keys, all_args = KEYS, ARGV
local count = tonumber(all_args[1])
local replies = {}
local next_key, next_arg = 1, 2 + 2 * count
for i = 1, count do
  local key_count, arg_count = tonumber(all_args[2 * i]), tonumber(all_args[2 * i + 1])
  local keys, args = {}, {}
  for j = 1, key_count do
    keys[j] = all_keys[next_key + j - 1]
  end
  for j = 1, arg_count do
    args[j] = all_args[next_arg + j - 1]
  end
  next_key, next_arg = next_key + key_count, next_arg + arg_count
  KEYS, ARGV = keys, args
  begin_call()
  local ok, reply = pcall(body_settle)
  if ok then
    replies[i] = reply
  elseif type(reply) == 'table' and reply.err then
    replies[i] = reply
  else
    replies[i] = {err = tostring(reply)}
  end
end
return replies
