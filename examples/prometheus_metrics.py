"""Prometheus metrics: count jobs with an observer, read queues at scrape time
(docs/integrations.md).

A PrometheusObserver records pushes, outcomes (succeeded, retried, dead) and durations;
an AppCollector reads queue sizes, the retry and dead sets and the workers from
`app.admin` whenever the registry is scraped. Here the metrics are printed instead of
being scraped. Needs the `prometheus` extra (prometheus_client).

Runs on the embedded memory backend in collect mode. Exits 0 when every check passed,
1 otherwise. Run it with `python examples/prometheus_metrics.py`.
"""

from __future__ import annotations

import logging
import sys

from prometheus_client import CollectorRegistry, generate_latest

from sideline import App
from sideline.contrib.prometheus import AppCollector, PrometheusObserver

registry = CollectorRegistry()
app = App(testing="collect", observers=[PrometheusObserver(registry)])
registry.register(AppCollector(app))


@app.job(name="metrics.send", queue="mail")
def send(to: str) -> None:
    """Send a mail (does nothing here)."""


@app.job(name="metrics.charge", retry=0)
def charge(amount: int) -> None:
    """Charge a card: refuses negative amounts, and is not retried."""
    if amount < 0:
        raise ValueError(f"cannot charge {amount}")


def main() -> int:
    logging.basicConfig(level=logging.CRITICAL)  # hide the dead job's log line
    send.enqueue("a@example.org")
    send.enqueue("b@example.org")
    charge.enqueue(10)
    charge.enqueue(-1)
    app.drain()
    send.enqueue("c@example.org")  # left waiting: the collector sees it
    text = generate_latest(registry).decode()
    for line in text.splitlines():
        if line.startswith("sideline_"):
            print(line)
    checks = {
        "two mails sent": registry.get_sample_value(
            "sideline_jobs_total",
            {"job": "metrics.send", "queue": "mail", "outcome": "succeeded"}) == 2,
        "one charge dead": registry.get_sample_value(
            "sideline_jobs_total",
            {"job": "metrics.charge", "queue": "default", "outcome": "dead"}) == 1,
        "one mail waiting": registry.get_sample_value(
            "sideline_queue_size", {"queue": "mail"}) == 1,
        "the dead set holds it": registry.get_sample_value("sideline_dead_jobs") == 1,
    }
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
