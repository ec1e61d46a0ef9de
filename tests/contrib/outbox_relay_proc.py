"""A relay process for the outbox SIGKILL test: relays until the outbox is empty.

Usage: python -m tests.contrib.outbox_relay_proc DSN NAMESPACE BATCH_SIZE PAUSE_S
(the Redis address comes from SIDELINE_REDIS_URL, as for RedisBackend.from_url). Each
batch pauses PAUSE_S seconds between its push and its commit, widening the window a
SIGKILL must hit to leave pushed rows behind. Prints "ready" once it starts relaying.
"""

from __future__ import annotations

import sys
import time

from sideline import App
from sideline.adapters.redis import RedisBackend
from sideline.contrib.outbox import Relay


def main(dsn: str, namespace: str, batch_size: str, pause_s: str) -> None:
    backend = RedisBackend.from_url(namespace=namespace)
    relay = Relay(App(backend), dsn, batch_size=int(batch_size))
    relay.before_commit = lambda: time.sleep(float(pause_s))
    print("ready", flush=True)  # the test kills only processes that got this far
    try:
        while relay.relay_once():
            pass
    finally:
        relay.close()
        backend.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
