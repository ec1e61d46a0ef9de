"""Observers: watch jobs being pushed without wrapping them (docs/observers.md).

An Observer subclass overrides the no-op hooks it needs. Here one counts pushes per
queue, and a second one is broken on purpose: its exception is logged and ignored, so
the push and the observers after it go on.

Runs on the embedded memory backend in collect mode, so the output is deterministic.
Exits 0 when every check passed, 1 otherwise. Run it with `python examples/observers.py`.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter

from sideline import App, Observer, Payload


class PushCounter(Observer):
    """Count pushed jobs per queue (a metrics exporter would do this)."""

    def __init__(self) -> None:
        self.pushed: Counter[str] = Counter()

    def after_enqueue(self, payload: Payload) -> None:
        self.pushed[payload.queue] += 1


class Broken(Observer):
    """An observer with a bug: it never breaks a push."""

    def before_enqueue(self, payload: Payload) -> None:
        raise RuntimeError("metrics server unreachable")


counter = PushCounter()
app = App(testing="collect", observers=[Broken(), counter])
sent: list[str] = []


@app.job(name="obs.send", queue="mail")
def send(to: str) -> None:
    sent.append(to)


@app.job(name="obs.resize", queue="images")
def resize(image_id: int) -> None:
    """Resize an image (does nothing here)."""


def main() -> int:
    logging.basicConfig(level=logging.CRITICAL)  # hide the broken observer's log line
    send.enqueue("a@example.org")
    send.enqueue_in(60, "b@example.org")
    resize.enqueue_bulk([[1], [2], [3]])
    ran = app.drain()
    checks = {
        "every push was counted, per queue": counter.pushed == {"mail": 2, "images": 3},
        "the broken observer stopped nothing": ran == 5 and len(sent) == 2,
    }
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    print(f"pushed per queue: {dict(sorted(counter.pushed.items()))}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
