"""SIGKILL a worker whose threads take several jobs per call (`--jobs-per-call`): nothing is
lost. The jobs it took and had not started, and those it finished without writing their
acks yet, were still in its in-progress list: the survivor recovers and runs them. Only
those may run twice, at most threads x jobs_per_call of them, never more than twice."""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest

from sideline.adapters.redis import RedisBackend
from sideline.core.payload import decode
from tests.redis.apps.jobs_app import build_app
from tests.redis.helpers import Spawn, in_progress_keys, read_events, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]

JOBS, THREADS, PER_CALL = 400, 2, 8


def test_sigkill_loses_nothing_and_reruns_only_what_the_victim_held(
        redis_ns: RedisBackend, spawn: Spawn) -> None:
    backend = redis_ns
    app = build_app(backend.keys.namespace)
    try:
        args = ["-c", str(THREADS), "--jobs-per-call", str(PER_CALL), "-t", "5"]
        victim = spawn("victim", args)
        app.enqueue_bulk("step", [[f"j{i}", 1, 4] for i in range(JOBS)])

        def victim_busy() -> bool:
            events = read_events(backend)
            return sum(e["kind"] == "end" and e["pid"] == victim.proc.pid
                       for e in events) >= 60
        wait_until(victim_busy, 30, "the victim to run 60 jobs", 0.001)
        victim.proc.kill()  # SIGKILL: no acks written, nothing handed back
        assert victim.wait(10) == -signal.SIGKILL
        held = {decode(raw).args[0] for raw in backend.in_progress(victim.worker_id)}
        assert 0 < len(held) <= THREADS * PER_CALL, held

        survivor = spawn("survivor", args)

        def all_ended() -> bool:
            ended = {e["jid"] for e in read_events(backend) if e["kind"] == "end"}
            return len(ended) == JOBS
        wait_until(all_ended, 60, "every job to end", 0.05)
        time.sleep(0.5)  # the survivor's last acks

        events = read_events(backend)
        assert len({e["jid"] for e in events}) == JOBS
        starts = Counter(e["jid"] for e in events if e["kind"] == "start")
        again = {jid for jid, count in starts.items() if count > 1}
        assert max(starts.values()) <= 2, starts.most_common(3)
        assert len(again) <= THREADS * PER_CALL, again
        print(f"\nvictim held {len(held)} jobs when killed; {len(again)} ran twice")
        victim_jids = {e["jid"] for e in events if e["pid"] == victim.proc.pid}
        assert again <= victim_jids  # only what the victim ran or held runs again
        assert in_progress_keys(backend) == {}
        assert backend.entries("dead") == []
        assert sum(backend.queue_sizes().values()) == 0
        survivor.signal(signal.SIGTERM)
        assert survivor.wait(15) == 0, survivor.log()
        assert in_progress_keys(backend) == {}
    finally:
        app.backend.close()
