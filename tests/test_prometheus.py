"""sideline.contrib.prometheus: the observer's metrics, the app collector, exposition."""

from __future__ import annotations

import sys
import urllib.request

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from sideline import App, ConfigurationError
from sideline.contrib.prometheus import (
    AppCollector,
    PrometheusObserver,
    start_metrics_server,
)
from sideline.core.payload import bump_recoveries
from sideline.web import create_app
from tests.support import wait_until


def _ran(registry: CollectorRegistry) -> App:
    """An app whose worker ran two successes, a retry and a death, recorded in `registry`;
    one job is left waiting in queue "later"."""
    app = App(observers=[PrometheusObserver(registry)])

    @app.job(name="ok")
    def ok() -> None: ...

    @app.job(name="flaky", retry=3)
    def flaky() -> None:
        raise RuntimeError("try again")

    @app.job(name="doomed", retry=0)
    def doomed() -> None:
        raise ValueError("never works")

    ok.enqueue()
    ok.enqueue()
    flaky.enqueue()
    doomed.enqueue()
    app.enqueue("ok", [], queue="later")
    with app.worker(concurrency=2, queues=["default"]) as worker:
        wait_until(lambda: worker.processed == 4)
    return app


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_the_observer_counts_enqueues_outcomes_and_durations() -> None:
    registry = CollectorRegistry()
    _ran(registry)
    assert value(registry, "sideline_jobs_enqueued_total", job="ok", queue="default") == 2
    assert value(registry, "sideline_jobs_enqueued_total", job="ok", queue="later") == 1
    assert value(registry, "sideline_jobs_total", job="ok", queue="default",
                 outcome="succeeded") == 2
    assert value(registry, "sideline_jobs_total", job="flaky", queue="default",
                 outcome="retried") == 1
    assert value(registry, "sideline_jobs_total", job="doomed", queue="default",
                 outcome="dead") == 1
    assert value(registry, "sideline_job_duration_seconds_count", job="ok",
                 queue="default") == 2
    assert value(registry, "sideline_job_duration_seconds_count", job="doomed",
                 queue="default") == 1
    assert value(registry, "sideline_busy_jobs") == 0
    assert value(registry, "sideline_recoveries_total") == 0


def test_a_recovered_run_is_counted() -> None:
    registry = CollectorRegistry()
    app = App(observers=[PrometheusObserver(registry, namespace="jobs")])
    app.job(name="again")(lambda: None)
    app.enqueue("again", [])
    raw = app.backend.queue_page("default", 0, 1)[0]
    app.backend.clear_queue("default")
    app.backend.push_raw("default", bump_recoveries(raw))  # as an orphan's re-push would
    assert app.drain() == 1
    assert value(registry, "jobs_recoveries_total") == 1


def test_the_collector_reads_queues_sets_and_workers_at_scrape_time() -> None:
    registry = CollectorRegistry()
    app = _ran(registry)
    registry.register(AppCollector(app))
    assert value(registry, "sideline_queue_size", queue="later") == 1
    assert value(registry, "sideline_queue_size", queue="default") == 0
    latency = value(registry, "sideline_queue_latency_seconds", queue="later")
    assert latency is not None
    assert latency >= 0
    assert value(registry, "sideline_dead_jobs") == 1
    assert value(registry, "sideline_retry_jobs") == 1
    assert value(registry, "sideline_scheduled_jobs") == 0
    assert value(registry, "sideline_workers") == 0  # the worker has stopped
    assert value(registry, "sideline_workers_busy_jobs") == 0
    app.enqueue("ok", [], queue="later")
    assert value(registry, "sideline_queue_size", queue="later") == 2


def test_the_dashboard_serves_metrics() -> None:
    registry = CollectorRegistry()
    app = _ran(registry)
    with TestClient(create_app(app, metrics=registry)) as client:
        response = client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text
        assert 'sideline_jobs_total{job="ok",outcome="succeeded",queue="default"} 2.0' in text
        assert "sideline_job_duration_seconds_bucket" in text
        assert 'sideline_queue_size{queue="later"} 1.0' in text
        assert "sideline_dead_jobs 1.0" in text
        assert client.get("/metrics").status_code == 200  # the served view is rebuilt, not
        # registered twice


def test_the_dashboard_has_no_metrics_unless_asked() -> None:
    with TestClient(create_app(App())) as client:
        assert client.get("/metrics").status_code == 404


def test_the_standalone_server_serves_on_a_free_port() -> None:
    registry = CollectorRegistry()
    app = _ran(registry)
    server = start_metrics_server(0, registry, app=app)
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        assert isinstance(port, int)
        assert port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'sideline_jobs_total{job="doomed",outcome="dead",queue="default"} 1.0' in text
    assert 'sideline_queue_size{queue="later"} 1.0' in text


def test_metrics_true_serves_the_global_registry_and_the_app() -> None:
    app = App()
    app.job(name="anything", queue="waiting")(lambda: None)
    app.enqueue("anything", [])
    with TestClient(create_app(app, metrics=True)) as client:
        text = client.get("/metrics").text
    assert "python_info" in text  # prometheus_client's default collectors
    assert 'sideline_queue_size{queue="waiting"} 1.0' in text


def test_metrics_without_prometheus_client_is_a_configuration_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sideline.contrib.prometheus", None)
    with pytest.raises(ConfigurationError, match=r"sideline\[prometheus\]"):
        create_app(App(), metrics=True)
