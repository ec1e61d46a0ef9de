"""JSON logs: one JSON object per line, with the job's fields.

Run: python examples/json_logs.py   (embedded in-memory backend, no Redis needed)

`sideline worker` writes them with SIDELINE_LOG_FORMAT=json (or --log-format json); an
embedded worker's process sets the formatter on its own handler, as here.
"""

from __future__ import annotations

import io
import json
import logging

from sideline import App
from sideline.logs import formatter

app = App()


@app.job(name="charge", retry=0)
def charge(amount: int) -> None:
    raise ValueError(f"card declined for {amount}")


@app.job(name="ship")
def ship(order: int) -> None:
    return None


def main() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter("json"))
    worker_log = logging.getLogger("sideline.worker")
    worker_log.addHandler(handler)
    worker_log.setLevel(logging.DEBUG)  # "done" lines are DEBUG; failures WARNING/ERROR
    worker_log.propagate = False
    ship.enqueue(7)
    charge.enqueue(30)
    app.drain()
    for line in stream.getvalue().splitlines():
        record = json.loads(line)  # every line is one JSON object
        print({k: record[k] for k in ("level", "job", "jid", "outcome", "duration_ms")
               if k in record})


if __name__ == "__main__":
    main()
