"""A template run end to end on real Redis, its steps performed by a `sideline worker` process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sideline import RunStatus, SchemaError
from sideline.adapters.redis import RedisBackend
from tests.redis.apps.templates_app import build_app, indexed_key
from tests.redis.helpers import spawn_worker

pytestmark = pytest.mark.redis

APP = "tests.redis.apps.templates_app:app"


def test_enrich_and_index_runs_by_doc_id_on_a_worker_process(redis_ns: RedisBackend,
                                                              tmp_path: Path) -> None:
    app = build_app(redis_ns.keys.namespace)
    try:
        with pytest.raises(SchemaError, match="field 'doc_id' expected int, got str '7'"):
            app.run_template("enrich_and_index", {"doc_id": "7"})
        run_id = app.run_template("enrich_and_index", {"doc_id": 7})
        broken = app.run_template("enrich_and_index", {"doc_id": 0, "lang": "fr"})
        worker = spawn_worker(redis_ns, tmp_path, "templates", app=APP)
        try:
            info = app.wait(run_id, timeout_s=20)
            failed = app.wait(broken, timeout_s=20)
        finally:
            worker.kill()
        assert info.status is RunStatus.SUCCEEDED, worker.log()
        indexed = [json.loads(raw) for raw in redis_ns.client.lrange(indexed_key(redis_ns), 0, -1)]
        assert indexed == [{"text": "Document 7 About Redis", "words": 5, "index": "docs",
                            "lang": "en"}]
        assert app.memory(run_id) == {}  # cleared when the run succeeded
        assert not redis_ns.client.exists(redis_ns.keys.memory(run_id))

        assert failed.status is RunStatus.FAILED
        [dead] = [entry.payload for entry in redis_ns.entries("dead")]
        assert dead.retry_count == 0  # not retried: the data cannot get better
        assert dead.dead_reason == "job 'fetch' output: field 'text' expected str, got None"
        assert app.memory(broken) == {"doc_id": 0, "lang": "fr", "index": "docs"}  # kept
        ttl_ms = redis_ns.client.pttl(redis_ns.keys.memory(broken))
        assert 0 < ttl_ms <= app.run_ttl_s * 1000
    finally:
        app.backend.close()
