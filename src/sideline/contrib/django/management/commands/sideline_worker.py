"""`python manage.py sideline_worker`: run an embedded worker until SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser  # type: ignore[import-untyped]

from sideline.contrib.django._settings import get_app

__all__ = ["Command"]


class Command(BaseCommand):  # type: ignore[misc]  # BaseCommand is untyped (Any)
    """Run a sideline worker for settings.SIDELINE["APP"] in this process."""

    help = "Run a sideline worker for settings.SIDELINE['APP'] until SIGTERM or SIGINT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-c", "--concurrency", type=int, default=None,
                            help="job threads (default: SIDELINE_CONCURRENCY, else 10)")
        parser.add_argument("-q", "--queue", action="append", dest="queues", default=None,
                            help="a queue to fetch from; repeat it, or give a,b,c (default: default)")

    def handle(self, *args: Any, **options: Any) -> None:
        worker_options: dict[str, Any] = {}
        if options["concurrency"] is not None:
            worker_options["concurrency"] = options["concurrency"]
        if options["queues"]:
            worker_options["queues"] = [name for value in options["queues"]
                                        for name in value.split(",") if name]
        worker = get_app().worker(**worker_options)
        stop = threading.Event()

        def request_stop(signum: int, _frame: FrameType | None) -> None:
            self.stdout.write(f"sideline worker: {signal.Signals(signum).name}, stopping")
            stop.set()

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            worker.start()
            self.stdout.write(f"sideline worker {worker.worker_id}: concurrency={worker.concurrency} "
                              f"queues={','.join(worker.weights)}")
            self.stdout.flush()
            while not stop.wait(0.5):
                pass
            worker.stop()
            self.stdout.write("sideline worker: stopped")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
