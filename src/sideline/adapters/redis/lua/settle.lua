-- settle.lua: carry out one Settlement (core.settlement) in one atomic step. In order:
-- a node's success is checked first (a run whose state is missing: 'expired', nothing is
-- applied; a run without that node: an error, nothing applied); the job is acked; a retry
-- goes to the retry set, a burial to the dead set (unless dropped); a job that stores its
-- result leaves its state and, once ended, its result (ARGV[29..32]); the node succeeds
-- (complete_node.lua) or dies (fail_node.lua's run part); the job's uniqueness lock is
-- released if its token still holds it; the stats counters are raised; and at most one
-- next job is fetched for the caller (fetch.lua with limit 1, refused jobs parked or
-- scheduled as there), its workflow step begun when asked (ARGV[23]). A job holding a
-- concurrency slot frees it as it is acked, whatever the action (a retry due later too),
-- and one parked job of its key goes back to its queue head (_lib.lua limit_free).
-- KEYS[1..5] run hash, nodes, remaining, graph, payloads (of run "-" for a plain job);
--   KEYS[6] the run's memory; KEYS[7] the worker's list holding the job;
--   KEYS[8] the uniqueness lock "lock:<unique_key>" (of "-" when none is released);
--   KEYS[9+2i], KEYS[10+2i] (i = 0, 1, ...) queue list i+1 to fetch from, in order, and
--   this worker's in-progress list for it
-- ARGV[1] P, ARGV[2] payload as fetched, ARGV[3] action ('ack', 'retry' or 'bury'),
-- ARGV[4] jid, ARGV[5] queue, ARGV[6] payload to store, ARGV[7] retry due time (s),
-- ARGV[8] keep a buried job (1/0), ARGV[9] now (s), ARGV[10] max dead jobs,
-- ARGV[11] dead ttl (s), ARGV[12] node event ('', 'succeeded' or 'failed'),
-- ARGV[13] run id, ARGV[14] node id, ARGV[15] the node's error as JSON
--   [error_class, error_message], ARGV[16] the lock token to release ('' for none),
-- ARGV[17] processed, ARGV[18] failed (counter increments), ARGV[19] minute bucket
--   "YYYY-MM-DDTHH:MM", ARGV[20] day bucket "YYYY-MM-DD", ARGV[21] minute bucket ttl (s),
-- ARGV[22] day bucket ttl (s), ARGV[23] '1' to begin the next job's workflow step at
--   now (_lib.lua begin_fetched), '' not to,
-- ARGV[24] the job's batch ('' for none), ARGV[25] what its ending means there
--   ('succeeded', 'failed', 'died'; _lib.lua batch_settled), ARGV[26] its error as JSON
--   [error class, message] (strings), ARGV[27] the batches a succeeded step waits for
--   (JSON list, '' for none: _lib.lua batch_await)
-- ARGV[28] the worker's id (the holder of the job's concurrency slot, if it has one)
-- ARGV[29..32] only for a job that stores its result (Settlement.tracked; absent
--   otherwise): ARGV[29] how long its result and info record are kept (s)
--   (result_ttl_s; _lib.lua store_result),
-- ARGV[30] the job's state for its info record ('succeeded' or 'failed' for an ack or a
--   burial, as its result record says; 'retrying' for a retry), ARGV[31] the result
--   record to store (JSON text, core.results.ResultRecord; '' for none), ARGV[32] the
--   retry count of a retry ('' otherwise)
-- Keys built from P: queues, retry, retry:jobs, dead, dead:jobs, schedule, schedule:jobs,
--   queue:<q> and wake:<q> (releases, callbacks), stat:processed, stat:failed and their
--   ":<minute>" and ":<day>" buckets, result:<jid> and jobinfo:<jid> (a tracked job),
--   limits, limit:<key>:running, :parked and :starts (limited jobs, _lib.lua admit)
-- returns: 'expired', or {transition as JSON (see _lib.lua outcome) or '' for no node event,
--   then, if a job was fetched, the number of its queue pair, the job and what
--   begin_fetched said ('' when not begun)}
local R = run_keys()
local P, raw, action, now, worker = ARGV[1], ARGV[2], ARGV[3], ARGV[9], ARGV[28]
local event, run_id, id = ARGV[12], ARGV[13], ARGV[14]
local current = nil
if event == EVENT.SUCCEEDED then
  current = completion_check(R, id, now)
  if current == 'expired' then
    return 'expired'
  elseif current == 'missing' then
    return redis.error_reply('run ' .. run_id .. ' has no node ' .. id)
  end
end
if redis.call('LREM', KEYS[7], 1, raw) == 1 then
  limit_free(P, raw, worker)
end
if action == 'retry' then
  set_add(P, 'retry', ARGV[4], ARGV[7], ARGV[5], ARGV[6])
elseif action == 'bury' and ARGV[8] == '1' then
  add_dead(P, ARGV[4], ARGV[5], ARGV[6], now, ARGV[10], ARGV[11])
end
if ARGV[29] then
  store_result(P, ARGV[4], ARGV[30], ARGV[31], ARGV[32], now, ARGV[29])
end
local transition = ''
if event == EVENT.SUCCEEDED and ARGV[27] ~= '' and current ~= 'compacted' then
  transition = batch_await(P, R, run_id, id, ARGV[27], now, current)
elseif event == EVENT.SUCCEEDED then
  transition = plan_complete(R, P, run_id, id, now, current)
elseif event == EVENT.FAILED then
  transition = plan_fail(R, P, run_id, id, now, ARGV[15])
end
if ARGV[16] ~= '' then
  release_if_held(KEYS[8], ARGV[16])
end
if ARGV[24] ~= '' then
  local moved = batch_settled(P, ARGV[24], ARGV[4], ARGV[25], ARGV[26], now)
  if moved ~= '' and transition == '' then
    transition = moved
  end
end
count_stat(P, 'processed', ARGV[17], ARGV[19], ARGV[20], ARGV[21], ARGV[22])
count_stat(P, 'failed', ARGV[18], ARGV[19], ARGV[20], ARGV[21], ARGV[22])
local begin_now = ''
if ARGV[23] == '1' then
  begin_now = now
end
local pair, job, begun = take_one(P, 9, begin_now, worker, now)
if pair then
  return {transition, pair, job, begun}
end
return {transition}
