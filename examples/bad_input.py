"""Bad input never stops a worker: every entry ends run or in the dead set with a reason.

Pushes garbage bytes, a payload with a wrong-typed field, an unknown job and a job that
raises asyncio.CancelledError (not an Exception) onto a queue, then a good job, and
shows what the dead set keeps: the reason, and the exact bytes of what could not be
read. Runs on the embedded memory backend; exits 1 if anything is off.

    python examples/bad_input.py
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time

from sideline import App
from sideline.adapters.memory import MemoryBackend

backend = MemoryBackend()
app = App(backend)
done: list[str] = []


@app.job(name="greet")
def greet(name: str) -> None:
    done.append(name)


@app.job(name="cancelled", retry=0)
def cancelled() -> None:
    raise asyncio.CancelledError("a library cancelled us")


garbage = b"\xff\xfe not even UTF-8"
backend.push_raw("default", garbage)
backend.push_raw("default", json.dumps({"name": "greet", "jid": "j1", "queue": "default",
                                        "args": "rm -rf"}))  # args must be a list
backend.push_raw("default", json.dumps({"name": "os.system", "jid": "j2", "queue": "default",
                                        "args": ["echo pwned"]}))  # never imported
cancelled.enqueue()
greet.enqueue("after the bad ones")

with app.worker(concurrency=2, fetch_timeout_s=0.05) as worker:
    deadline = time.monotonic() + 10
    while (app.admin.stats().dead < 4 or not done) and time.monotonic() < deadline:
        time.sleep(0.01)
    threads = worker.threads_alive()

print(f"good job ran: {done}; worker threads alive: {threads}")
ok = done == ["after the bad ones"] and threads == 3
dead = app.admin.dead().entries
for entry in dead:
    payload = entry.payload
    print(f"dead {payload.name}: {payload.dead_reason}")
    if "raw_base64" in payload.kwargs:
        kept = base64.b64decode(payload.kwargs["raw_base64"])
        print(f"  exact bytes kept: {kept!r}")
        ok = ok and kept == garbage
reasons = " ".join(e.payload.dead_reason or "" for e in dead)
ok = ok and all(text in reasons for text in ("undecodable payload: payload is not UTF-8",
                                             "payload field 'args' must be a list",
                                             "unknown job 'os.system'", "CancelledError"))
print("every bad entry is in the dead set with a reason" if ok else "UNEXPECTED")
sys.exit(0 if ok else 1)
