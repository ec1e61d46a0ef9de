"""Settings: arguments win over SIDELINE_* variables, which win over defaults."""

from __future__ import annotations

import pytest

from sideline import App, ConfigurationError, MemoryBackend
from sideline.adapters.redis import RedisBackend
from sideline.environment import env_number
from sideline.runtime.config import WorkerSettings, parse_queues
from tests.support import fake_redis_backend


def test_queue_lists_are_strict_and_weighted_when_every_queue_has_a_weight() -> None:
    assert parse_queues("critical, default") == ["critical", "default"]
    assert parse_queues("critical:3,default:1") == {"critical": 3, "default": 1}
    with pytest.raises(ConfigurationError, match="give every queue a weight"):
        parse_queues("a:3,b")
    with pytest.raises(ConfigurationError, match="at least one queue"):
        parse_queues(" , ")


def test_argument_beats_environment_beats_default() -> None:
    environ = {"SIDELINE_CONCURRENCY": "7", "SIDELINE_QUEUES": "a,b", "SIDELINE_TIMEOUT": "3",
               "SIDELINE_HEARTBEAT_TTL_S": ""}
    settings = WorkerSettings.resolve({"concurrency": 2, "queues": None}, environ)
    assert (settings.concurrency, settings.queues, settings.shutdown_timeout_s) == (
        2, ["a", "b"], 3.0)
    assert settings.heartbeat_ttl_s == 15.0  # empty variable: the default


@pytest.mark.parametrize(("environ", "message"), [
    ({"SIDELINE_CONCURRENCY": "ten"}, "concurrency 'ten' is not an integer"),
    ({"SIDELINE_TIMEOUT": "soon"}, "SIDELINE_TIMEOUT='soon' is not a number"),
])
def test_bad_environment_values_are_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        WorkerSettings.resolve({}, environ)


def test_env_number() -> None:
    assert env_number("X", 5, environ={}) == 5
    assert env_number("X", 5, integer=True, environ={"X": "9"}) == 9
    with pytest.raises(ConfigurationError, match=r"X='1\.5' is not an integer"):
        env_number("X", 5, integer=True, environ={"X": "1.5"})


def test_app_and_embedded_worker_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDELINE_MAX_RECOVERIES", "9")
    monkeypatch.setenv("SIDELINE_RUN_TTL_S", "60")
    monkeypatch.setenv("SIDELINE_CONCURRENCY", "3")
    monkeypatch.setenv("SIDELINE_INSTANCE_ID", "box-1")
    app = App()
    assert (app.max_recoveries, app.run_ttl_s) == (9, 60)
    assert App(max_recoveries=1).max_recoveries == 1
    worker = app.worker(queues=["q"])
    assert (worker.concurrency, worker.weights, worker.instance_id) == (3, {"q": 0}, "box-1")
    assert app.worker(concurrency=5).concurrency == 5


def test_backends_read_their_defaults_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDELINE_MAX_DEAD", "5")
    monkeypatch.setenv("SIDELINE_DEAD_TTL_S", "60")
    monkeypatch.setenv("SIDELINE_NAMESPACE", "tenant-a")
    memory = MemoryBackend()
    assert (memory.max_dead, memory.dead_ttl_s) == (5, 60)
    backend = next(fake_redis_backend())
    redis_backend = RedisBackend(backend.client)
    assert (redis_backend.keys.prefix, redis_backend.max_dead) == ("{tenant-a}:", 5)
    monkeypatch.setenv("SIDELINE_MAX_DEAD", "many")
    with pytest.raises(ConfigurationError, match="SIDELINE_MAX_DEAD='many' is not an integer"):
        MemoryBackend()


def test_the_redis_timeout_comes_from_the_argument_or_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = "redis://127.0.0.1:1/0"  # never contacted: from_url connects on first use

    def timeouts(backend: RedisBackend) -> tuple[float, float]:
        kwargs = backend.client.get_connection_kwargs()
        backend.close()
        return kwargs["socket_timeout"], kwargs["socket_connect_timeout"]

    monkeypatch.delenv("SIDELINE_REDIS_TIMEOUT_S", raising=False)
    assert timeouts(RedisBackend.from_url(url)) == (5.0, 5.0)
    monkeypatch.setenv("SIDELINE_REDIS_TIMEOUT_S", "2.5")
    assert timeouts(RedisBackend.from_url(url)) == (2.5, 2.5)
    assert timeouts(RedisBackend.from_url(url, timeout_s=7)) == (7.0, 7.0)
    for bad in ("0", "-1", "nan"):
        monkeypatch.setenv("SIDELINE_REDIS_TIMEOUT_S", bad)
        with pytest.raises(ConfigurationError, match="SIDELINE_REDIS_TIMEOUT_S"):
            RedisBackend.from_url(url)
    monkeypatch.setenv("SIDELINE_REDIS_TIMEOUT_S", "soon")
    with pytest.raises(ConfigurationError, match="SIDELINE_REDIS_TIMEOUT_S='soon' is not a number"):
        RedisBackend.from_url(url)
