"""Prometheus metrics (the `prometheus` extra: `pip install sideline[prometheus]`).

Two sources, both under one namespace ("sideline" by default):

- `PrometheusObserver`, an Observer counting what this process sees: jobs pushed,
  jobs settled per outcome, run durations, recovered runs and jobs in flight.
- `AppCollector`, read at scrape time from `app.admin`: queue sizes and latencies, the
  scheduled, retry and dead set sizes, live workers and their busy jobs (fleet-wide).

Serve them with `metrics_app` (an ASGI app, also `create_app(app, metrics=True)` on the
dashboard at /metrics) or `start_metrics_server` (a port of its own).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import make_asgi_app as _make_asgi_app
from prometheus_client import start_http_server as _start_http_server
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sideline.core.settlement import Action
from sideline.runtime.observers import Observer

if TYPE_CHECKING:
    from sideline.core.payload import Payload
    from sideline.core.settlement import Outcome, Settlement
    from sideline.runtime.app import App
    from sideline.runtime.middleware import JobContext

__all__ = ["OUTCOMES", "ASGIApp", "AppCollector", "PrometheusObserver", "metrics_app",
           "start_metrics_server"]

ASGIApp = Callable[..., Awaitable[Any]]
"""An ASGI application: called with scope, receive and send."""

OUTCOMES = {Action.ACK: "succeeded", Action.RETRY: "retried", Action.BURY: "dead"}
"""The `outcome` label of `jobs_total` for each settlement action."""


class PrometheusObserver(Observer):
    """Records this process's jobs as Prometheus metrics.

    Metrics (each prefixed with `namespace` and "_"):
        jobs_enqueued_total{job,queue}: jobs pushed (or scheduled) by this process.
        jobs_total{job,queue,outcome}: runs settled here: succeeded, retried or dead
            (a job buried without running, say an unknown one, counts as dead too).
        job_duration_seconds{job,queue}: how long the job's code ran (histogram).
        recoveries_total: runs of a job recovered from a dead worker.
        busy_jobs: jobs running in this process now.

    Args:
        registry: where the metrics are registered (default: prometheus_client's global
            REGISTRY; pass a fresh `CollectorRegistry()` to keep them apart).
        namespace: the prefix of every metric name.
    """

    def __init__(self, registry: CollectorRegistry | None = None,
                 namespace: str = "sideline") -> None:
        self.registry = REGISTRY if registry is None else registry
        self.enqueued = Counter("jobs_enqueued", "Jobs pushed or scheduled.", ["job", "queue"],
                                namespace=namespace, registry=self.registry)
        self.settled = Counter("jobs", "Job runs settled, by outcome (succeeded, retried, dead).",
                               ["job", "queue", "outcome"], namespace=namespace,
                               registry=self.registry)
        self.duration = Histogram("job_duration_seconds", "How long a job's code ran.",
                                  ["job", "queue"], namespace=namespace, registry=self.registry)
        self.recoveries = Counter("recoveries", "Runs of a job recovered from a dead worker.",
                                  namespace=namespace, registry=self.registry)
        self.busy = Gauge("busy_jobs", "Jobs running in this process now.",
                          namespace=namespace, registry=self.registry)
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    def after_enqueue(self, payload: Payload) -> None:
        self.enqueued.labels(payload.name, payload.queue).inc()

    def before_perform(self, context: JobContext) -> None:
        payload = context.payload
        with self._lock:
            self._started[payload.jid] = time.perf_counter()
        self.busy.inc()
        if payload.recoveries > 0:
            self.recoveries.inc()

    def after_perform(self, context: JobContext, outcome: Outcome) -> None:
        payload = context.payload
        with self._lock:
            started = self._started.pop(payload.jid, None)
        if started is None:  # its before_perform was not seen (observer added meanwhile)
            return
        self.busy.dec()
        self.duration.labels(payload.name, payload.queue).observe(time.perf_counter() - started)

    def after_settle(self, payload: Payload, settlement: Settlement) -> None:
        if settlement.processed == 0:  # not a run of the job: nothing to count
            return
        self.settled.labels(payload.name, payload.queue, OUTCOMES[settlement.action]).inc()


class AppCollector(Collector):
    """Reads `app.admin` at each scrape: what every worker of the app shares.

    Metrics (each prefixed with `namespace` and "_"): queue_size{queue},
    queue_latency_seconds{queue} (age of the oldest job), scheduled_jobs, retry_jobs,
    dead_jobs (the sets' sizes), workers (alive) and workers_busy_jobs (jobs running on
    them). A scrape costs a few backend reads; an error reading them fails the scrape.
    """

    def __init__(self, app: App, namespace: str = "sideline") -> None:
        self.app = app
        self.namespace = namespace

    def _families(self) -> dict[str, GaugeMetricFamily]:
        def gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{self.namespace}_{name}", documentation,
                                     labels=list(labels))
        return {
            "queue_size": gauge("queue_size", "Jobs waiting in the queue.", ["queue"]),
            "queue_latency": gauge("queue_latency_seconds",
                                   "Age of the queue's oldest job (0 when empty).", ["queue"]),
            "scheduled": gauge("scheduled_jobs", "Jobs in the scheduled set."),
            "retry": gauge("retry_jobs", "Jobs in the retry set."),
            "dead": gauge("dead_jobs", "Jobs in the dead set."),
            "workers": gauge("workers", "Live workers."),
            "busy": gauge("workers_busy_jobs", "Jobs running on live workers."),
        }

    def describe(self) -> Iterable[Metric]:
        """The metric families without samples (registering reads no backend)."""
        return list(self._families().values())

    def collect(self) -> Iterable[Metric]:
        """The families with their current values, read from the backend."""
        families = self._families()
        for queue in self.app.admin.queues():
            families["queue_size"].add_metric([queue.name], queue.size)
            families["queue_latency"].add_metric([queue.name], queue.latency_s)
        stats = self.app.admin.stats()
        families["scheduled"].add_metric([], stats.scheduled)
        families["retry"].add_metric([], stats.retries)
        families["dead"].add_metric([], stats.dead)
        families["workers"].add_metric([], stats.workers)
        families["busy"].add_metric([], stats.busy)
        return list(families.values())


class _Joined(Collector):
    """Every metric of several collectors or registries, as one collector."""

    def __init__(self, sources: Iterable[Collector]) -> None:
        self.sources = tuple(sources)

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()


def _serving(app: App | None, registry: CollectorRegistry | None,
             namespace: str) -> Collector:
    """What is served: `registry` (default REGISTRY), with `app`'s collector when given
    (added to the served view only: `registry` is not changed)."""
    base = REGISTRY if registry is None else registry
    if app is None:
        return base
    return _Joined([base, AppCollector(app, namespace)])


def metrics_app(app: App | None, registry: CollectorRegistry | None = None, *,
                namespace: str = "sideline") -> ASGIApp:
    """An ASGI app serving the metrics of `registry` (default REGISTRY) and, when `app` is
    given, its `AppCollector`, in the Prometheus text format. Mount it where you like."""
    served = _serving(app, registry, namespace)
    return _make_asgi_app(registry=served)


def start_metrics_server(port: int, registry: CollectorRegistry | None = None,
                         addr: str = "127.0.0.1", *, app: App | None = None,
                         namespace: str = "sideline") -> WSGIServer:
    """Serve the metrics on a port of their own, from a daemon thread.

    Args:
        port: the port to listen on (0: any free one; read `server.server_port`).
        registry: the metrics to serve (default: prometheus_client's REGISTRY).
        addr: the address to listen on (loopback by default: metrics are not public).
        app: also serve its `AppCollector`.

    Returns:
        The server: `shutdown()` then `server_close()` stops it.
    """
    served = _serving(app, registry, namespace)
    server, _thread = _start_http_server(port, addr, registry=served)
    return server
