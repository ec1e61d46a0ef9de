"""An app module for the `sideline` command, on Redis (see docs/cli.md).

`sideline worker --app examples.redis_app:app` imports this module and runs its jobs;
`sideline enqueue NAME '[args]' --app examples.redis_app:app` pushes one. Its keys live
in the Redis namespace "examples" at SIDELINE_REDIS_URL (default
redis://127.0.0.1:6379/0). Importing it does not connect to Redis: the connection pool
connects on first use.

Run as a script, it only prints the jobs it declares, without touching Redis:

    python examples/redis_app.py              # list the declared jobs
    python examples/redis_app.py workflow     # start a small workflow, print its run id
"""

from __future__ import annotations

import sys
import time

from sideline import App, Chain, Group, Workflow
from sideline.adapters.redis import RedisBackend

app = App(RedisBackend.from_url(namespace="examples"))


# Explicit names: a payload names its job, and the name must not depend on whether this
# module was imported as `examples.redis_app` (by the CLI) or run as `__main__`.
@app.job(name="examples.greet")
def greet(name: str) -> None:
    """Print a greeting."""
    print(f"hello, {name}", flush=True)


@app.job(name="examples.step", queue="default")
def step(label: str, sleep_ms: int = 20) -> None:
    """A workflow step that takes a little time."""
    time.sleep(sleep_ms / 1000)


@app.job(name="examples.report", queue="critical", retry=3)
def report(period: str) -> None:
    """A job on another queue, for `-q critical,default`."""
    print(f"report for {period}", flush=True)


def start_workflow() -> str:
    """Start Chain(fetch, Group(resize-a, resize-b), publish); return the run id."""
    tree = Chain(step.s("fetch"), Group(step.s("resize-a"), step.s("resize-b")),
                 step.s("publish"))
    return Workflow(tree, app=app).run()


def main(argv: list[str]) -> int:
    """List the declared jobs, or (with 'workflow') start a workflow on Redis."""
    if argv[1:] == ["workflow"]:
        print(start_workflow())
        return 0
    for name in sorted(app.registry.names()):
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
