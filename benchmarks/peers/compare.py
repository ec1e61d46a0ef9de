"""sideline side by side with dramatiq 2.2 on the same Redis: drain rate and pickup latency.

    python benchmarks/peers/compare.py [--systems sideline,dramatiq] [--jobs 10000,100000]
        [--processes 1,2] [--threads 8] [--jobs-per-call 1,8] [--latency-samples 300]
        [--measure drain,latency] [--timeout 300] [--json]

drain: N no-op jobs are pushed onto a fresh namespace, then the system's own worker CLI
starts (`sideline worker ...` or `dramatiq ...`) and the driver polls, about every
millisecond, how many jobs are done. The window opens at the first poll that sees a job
done and closes at the first poll that sees all N done; rate = jobs done inside the
window / window length. Worker start-up is outside the window. sideline drains once per
`--jobs-per-call` value (its worker's `--jobs-per-call`: waiting jobs a thread takes per
call, default 1); dramatiq's own prefetch is left at its default.

latency: one idle worker process with T threads; the driver enqueues `stamp(time.time())`
and the job, when it starts, pushes `time.time() - sent_at` onto a Redis list that the
driver BLPOPs; 20 ms of idleness between samples.

Progress goes to stderr; the table (or, with --json, one JSON object per line) to stdout.
The targets are printed next to the figures; they are never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any, Protocol

import redis

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script: make `benchmarks.peers` importable

from benchmarks.peers import sideline_app  # noqa: E402

DEFAULT_URL = "redis://127.0.0.1:6379/0"
SYSTEMS = ("sideline", "dramatiq")
POLL_S = 0.001
WARMUP_SAMPLES = 20
IDLE_BETWEEN_SAMPLES_S = 0.020
SAMPLE_TIMEOUT_S = 5
STOP_GRACE_S = 30.0
PUSH_BATCH = 10_000


def progress(message: str) -> None:
    print(f"[peers] {message}", file=sys.stderr, flush=True)


def redis_url() -> str:
    return os.environ.get("SIDELINE_REDIS_URL") or DEFAULT_URL


class BenchError(Exception):
    """A measurement could not be made (worker died, timeout...)."""


# -- the systems ----------------------------------------------------------------------------


class Target(Protocol):
    """One system on one fresh namespace."""

    name: str
    namespace: str
    client: redis.Redis

    def command(self, processes: int, threads: int) -> list[str]: ...
    def push_noops(self, count: int) -> None: ...
    def done(self, total: int) -> int: ...
    def enqueue_stamp(self) -> None: ...
    def close(self) -> None: ...


def _cli(name: str) -> str:
    """The console script `name` of this interpreter's environment."""
    script = Path(sys.executable).parent / name
    return str(script) if script.exists() else name


class SidelineTarget:
    name = "sideline"

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.per_call = 1
        """The worker's --jobs-per-call."""
        self.app = sideline_app.build_app(namespace)
        self.client = redis.Redis.from_url(redis_url(), decode_responses=True)
        self.processed_key = "{%s}:stat:processed" % namespace  # noqa: UP031 (a hash tag)

    def command(self, processes: int, threads: int) -> list[str]:
        return [_cli("sideline"), "worker", "--app", "benchmarks.peers.sideline_app:app",
                "-p", str(processes), "-c", str(threads), "--jobs-per-call", str(self.per_call)]

    def push_noops(self, count: int) -> None:
        for start in range(0, count, PUSH_BATCH):
            self.app.enqueue_bulk(sideline_app.NOOP, [[]] * min(PUSH_BATCH, count - start))

    def done(self, total: int) -> int:
        return int(self.client.get(self.processed_key) or 0)

    def enqueue_stamp(self) -> None:
        self.app.enqueue(sideline_app.STAMP, [time.time()])

    def close(self) -> None:
        self.app.backend.close()
        self.client.close()


class DramatiqTarget:
    name = "dramatiq"

    def __init__(self, namespace: str) -> None:
        # Imported here: only a dramatiq run needs dramatiq installed.
        from dramatiq import Message  # noqa: PLC0415

        from benchmarks.peers import dramatiq_app  # noqa: PLC0415

        self.actors = dramatiq_app
        self.namespace = namespace
        self.message = Message
        self.broker = dramatiq_app.make_broker(namespace)
        self.client = redis.Redis.from_url(redis_url(), decode_responses=True)
        # dramatiq keeps a message in this hash until it is acked (brokers/redis/dispatch.lua).
        self.messages_key = f"{namespace}:{dramatiq_app.QUEUE}.msgs"

    def command(self, processes: int, threads: int) -> list[str]:
        return [_cli("dramatiq"), "benchmarks.peers.dramatiq_app",
                "-p", str(processes), "-t", str(threads)]

    def _send(self, actor: str, args: tuple[Any, ...]) -> None:
        self.broker.enqueue(self.message(queue_name=self.actors.QUEUE, actor_name=actor,
                                         args=args, kwargs={}, options={}))

    def push_noops(self, count: int) -> None:
        for _ in range(count):
            self._send(self.actors.NOOP, ())

    def done(self, total: int) -> int:
        return total - int(self.client.hlen(self.messages_key))

    def enqueue_stamp(self) -> None:
        self._send(self.actors.STAMP, (time.time(),))

    def close(self) -> None:
        self.broker.close()
        self.client.close()


TARGETS: dict[str, Callable[[str], Target]] = {"sideline": SidelineTarget,
                                               "dramatiq": DramatiqTarget}


def fresh_namespace() -> str:
    return f"peerbench-{secrets.token_hex(6)}"


def delete_namespace(client: redis.Redis, namespace: str) -> int:
    """UNLINK every key of `namespace`: "<ns>..." (dramatiq, the latency list) and
    "{<ns>}..." (sideline's keys carry the namespace as a hash tag)."""
    deleted = 0
    for pattern in (f"{namespace}*", f"{{{namespace}}}*"):
        batch: list[str] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(client.unlink(*batch))
                batch = []
        if batch:
            deleted += int(client.unlink(*batch))
    return deleted


# -- the worker process ---------------------------------------------------------------------


class WorkerProcess:
    """A worker CLI in its own session, its output in a temporary file."""

    def __init__(self, command: list[str], namespace: str) -> None:
        env = dict(os.environ)
        env[sideline_app.ENV_NAMESPACE] = namespace
        env["PYTHONPATH"] = os.pathsep.join(
            part for part in (str(ROOT), env.get("PYTHONPATH", "")) if part)
        self.command = command
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self.started = time.perf_counter()
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                        stdout=self.log, stderr=self.log, start_new_session=True)

    def log_tail(self, limit: int = 3_000) -> str:
        self.log.seek(0, os.SEEK_END)
        self.log.seek(max(0, self.log.tell() - limit))
        return self.log.read().decode("utf-8", "replace")

    def check(self) -> None:
        """Raise if the worker exited."""
        code = self.process.poll()
        if code is not None:
            raise BenchError(f"{' '.join(self.command)} exited early with code {code}; "
                             f"its output ends with:\n{self.log_tail()}")

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self) -> tuple[float, str]:
        """SIGTERM, wait, SIGKILL the process group if needed. Returns (seconds, remark)."""
        began = time.perf_counter()
        remark = ""
        if self.process.poll() is not None:
            remark = f"had already exited with code {self.process.returncode}"
        else:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                remark = f"did not stop within {STOP_GRACE_S:g} s of SIGTERM: killed"
            else:
                if self.process.returncode not in (0, -signal.SIGTERM):
                    remark = f"exit code {self.process.returncode} after SIGTERM"
                deadline = time.monotonic() + 5.0
                while self._group_alive() and time.monotonic() < deadline:
                    time.sleep(0.05)
        if self._group_alive():
            remark = remark or "child processes outlived the worker by 5 s: killed"
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        took = time.perf_counter() - began
        if remark:
            progress(f"{self.command[0]}: {remark}; output ends with:\n{self.log_tail(1_500)}")
        self.log.close()
        return took, remark


# -- measurements ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Drain:
    system: str
    processes: int
    threads: int
    jobs: int
    rate: float
    """Jobs per second inside the window."""
    window_s: float
    counted: int
    """Jobs done inside the window (N minus those done at its first poll)."""
    start_s: float
    """From starting the worker command to the first job seen done."""
    stop_s: float
    """From SIGTERM to the worker's whole process group gone."""
    stop_remark: str
    runs: tuple[float, ...] = ()
    """With --repeat: the rate of every run (`rate` is then their median)."""
    per_call: int = 1
    """sideline's --jobs-per-call (1 for dramatiq)."""


@dataclass(frozen=True)
class Latency:
    system: str
    threads: int
    samples: int
    median_ms: float
    p99_ms: float
    max_ms: float


def _poll_drain(target: Target, total: int, worker: WorkerProcess, timeout_s: float,
                poll_s: float) -> tuple[float, float, int]:
    """Poll until all `total` jobs are done: (t0, t1, d0) of the window."""
    deadline = time.monotonic() + timeout_s
    opened: tuple[float, int] | None = None
    next_check = 0.0
    while True:
        done = target.done(total)
        now = time.perf_counter()
        if opened is None and done > 0:
            opened = (now, done)
        if opened is not None and done >= total:
            return opened[0], now, opened[1]
        if now >= next_check:
            worker.check()
            if time.monotonic() > deadline:
                raise BenchError(f"{target.name}: {done}/{total} jobs done after {timeout_s:g} s")
            next_check = now + 0.1
        time.sleep(poll_s)


def measure_drain(system: str, jobs: int, processes: int, threads: int,
                  timeout_s: float, *, poll_s: float = POLL_S, per_call: int = 1) -> Drain:
    namespace = fresh_namespace()
    target = TARGETS[system](namespace)
    if isinstance(target, SidelineTarget):
        target.per_call = per_call
    try:
        progress(f"{system}: pushing {jobs} noop jobs on {namespace}")
        target.push_noops(jobs)
        progress(f"{system}: draining with {processes} process(es) x {threads} threads"
                 + (f", {per_call} jobs per call" if system == "sideline" else ""))
        worker = WorkerProcess(target.command(processes, threads), namespace)
        try:
            t0, t1, d0 = _poll_drain(target, jobs, worker, timeout_s, poll_s)
        finally:
            stop_s, remark = worker.stop()
    finally:
        delete_namespace(target.client, namespace)
        target.close()
    if t1 <= t0:
        raise BenchError(f"{system}: all {jobs} jobs were done at the first poll; push more jobs")
    return Drain(system, processes, threads, jobs, (jobs - d0) / (t1 - t0), t1 - t0, jobs - d0,
                 t0 - worker.started, stop_s, remark,
                 per_call=per_call if system == "sideline" else 1)


def _wait_stamp(target: Target, key: str, worker: WorkerProcess, timeout_s: float) -> float:
    """BLPOP one reported delay (seconds), checking the worker every second."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = target.client.blpop([key], timeout=1)
        if found is not None:
            return float(found[1])
        worker.check()
    raise BenchError(f"{target.name}: no stamp job started within {timeout_s:g} s")


def _sample(target: Target, key: str, worker: WorkerProcess) -> float:
    target.enqueue_stamp()
    delay = _wait_stamp(target, key, worker, SAMPLE_TIMEOUT_S)
    time.sleep(IDLE_BETWEEN_SAMPLES_S)
    return delay


def measure_latency(system: str, threads: int, samples: int, timeout_s: float) -> Latency:
    namespace = fresh_namespace()
    target = TARGETS[system](namespace)
    key = sideline_app.latency_key(namespace)
    try:
        progress(f"{system}: latency, 1 process x {threads} threads, {samples} samples")
        worker = WorkerProcess(target.command(1, threads), namespace)
        try:
            target.enqueue_stamp()  # answered once the worker is up
            _wait_stamp(target, key, worker, timeout_s)
            for _ in range(WARMUP_SAMPLES):
                _sample(target, key, worker)
            delays_ms = sorted(_sample(target, key, worker) * 1000 for _ in range(samples))
        finally:
            worker.stop()
    finally:
        delete_namespace(target.client, namespace)
        target.close()
    p99 = delays_ms[min(len(delays_ms) - 1, int(0.99 * len(delays_ms)))]
    return Latency(system, threads, samples, statistics.median(delays_ms), p99, delays_ms[-1])


# -- output ---------------------------------------------------------------------------------


def _rate(drains: Sequence[Drain], system: str, processes: int, threads: int,
          jobs: int, *, per_call: int = 1) -> float | None:
    for drain in drains:
        if (drain.system, drain.processes, drain.threads, drain.jobs, drain.per_call) == (
                system, processes, threads, jobs, per_call):
            return drain.rate
    return None


def _ratio(drains: Sequence[Drain], drain: Drain) -> float | None:
    """sideline (at `drain`'s jobs per call) / dramatiq in `drain`'s configuration, if both
    were measured."""
    mine = _rate(drains, "sideline", drain.processes, drain.threads, drain.jobs,
                 per_call=drain.per_call)
    theirs = _rate(drains, "dramatiq", drain.processes, drain.threads, drain.jobs)
    return None if mine is None or theirs is None else mine / theirs


def targets(drains: Sequence[Drain], latencies: Sequence[Latency],
            threads: int) -> list[dict[str, Any]]:
    """The issue's targets with the figures measured for them (never asserted)."""
    found: list[dict[str, Any]] = []
    for drain in drains:
        if drain.system != "sideline":
            continue
        ratio = _ratio(drains, drain)
        if drain.processes == 1 and drain.threads == 8 and ratio is not None:
            found.append({"target": "1 process x 8 threads: sideline >= 3x dramatiq",
                          "jobs": drain.jobs, "per_call": drain.per_call,
                          "figure": round(ratio, 2), "met": ratio >= 3})
        if drain.processes == 2:
            found.append({"target": "2 processes: sideline >= 12,000 jobs/s",
                          "threads": drain.threads, "jobs": drain.jobs,
                          "per_call": drain.per_call,
                          "figure": round(drain.rate), "met": drain.rate >= 12_000})
    for processes, per_call in sorted({(d.processes, d.per_call) for d in drains}):
        small = _rate(drains, "sideline", processes, threads, 10_000, per_call=per_call)
        large = _rate(drains, "sideline", processes, threads, 100_000, per_call=per_call)
        if small is not None and large is not None:
            change = small / large - 1
            found.append({"target": "sideline rates at 10k and 100k jobs within 10%",
                          "processes": processes, "per_call": per_call,
                          "figure": f"{change:+.1%}", "met": abs(change) <= 0.10})
    found.extend({"target": "sideline latency median <= 2 ms", "figure": round(lat.median_ms, 2),
                  "met": lat.median_ms <= 2} for lat in latencies if lat.system == "sideline")
    return found


def print_table(drains: Sequence[Drain], latencies: Sequence[Latency],
                threads: int) -> None:
    if drains:
        print(f"{'system':<9} {'procs':>5} {'threads':>7} {'per call':>8} {'jobs':>8} "
              f"{'jobs/s':>9} {'sl/dq':>6} {'start s':>8} {'stop s':>7}")
        for d in drains:
            ratio = _ratio(drains, d)
            shown = f"{ratio:.2f}x" if ratio is not None and d.system == "sideline" else ""
            per_call = str(d.per_call) if d.system == "sideline" else "-"
            print(f"{d.system:<9} {d.processes:>5} {d.threads:>7} {per_call:>8} {d.jobs:>8} "
                  f"{d.rate:>9,.0f} {shown:>6} {d.start_s:>8.2f} {d.stop_s:>7.2f}"
                  + (f"  ({d.stop_remark})" if d.stop_remark else ""))
    if latencies:
        print()
        print(f"{'latency':<9} {'threads':>7} {'samples':>7} {'median ms':>10} {'p99 ms':>8} "
              f"{'max ms':>8}")
        for lat in latencies:
            print(f"{lat.system:<9} {lat.threads:>7} {lat.samples:>7} {lat.median_ms:>10.2f} "
                  f"{lat.p99_ms:>8.2f} {lat.max_ms:>8.2f}")
    found = targets(drains, latencies, threads)
    if found:
        print()
        print("targets (from the issue; reported, not asserted):")
        for item in found:
            where = ", ".join(f"{k}={item[k]}" for k in ("processes", "threads", "jobs",
                                                          "per_call") if k in item)
            print(f"  {item['target']:<48} {where:<36} measured {item['figure']}  "
                  f"{'met' if item['met'] else 'NOT met'}")


def print_json(drains: Sequence[Drain], latencies: Sequence[Latency], threads: int) -> None:
    for drain in drains:
        ratio = _ratio(drains, drain) if drain.system == "sideline" else None
        print(json.dumps({"kind": "drain", **asdict(drain), "ratio_vs_dramatiq": ratio}))
    for lat in latencies:
        print(json.dumps({"kind": "latency", **asdict(lat)}))
    for item in targets(drains, latencies, threads):
        print(json.dumps({"kind": "target", **item}))


# -- command line ---------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _names(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [part.strip() for part in text.split(",") if part.strip()]
        unknown = sorted(set(names) - set(allowed))
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose among {', '.join(allowed)}")
        return names
    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", type=_names(SYSTEMS), default=list(SYSTEMS))
    parser.add_argument("--jobs", type=_ints, default=[10_000, 100_000],
                        help="drain sizes (default 10000,100000)")
    parser.add_argument("--processes", type=_ints, default=[1, 2],
                        help="worker processes for the drain (default 1,2)")
    parser.add_argument("--threads", type=int, default=8, help="threads per process (default 8)")
    parser.add_argument("--jobs-per-call", dest="per_call", type=_ints, default=[1],
                        help="sideline's --jobs-per-call values to drain with (default 1)")
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument("--measure", type=_names(("drain", "latency")),
                        default=["drain", "latency"], help="drain,latency (default both)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="drain runs per configuration; the median rate is shown (default 1)")
    parser.add_argument("--poll-ms", type=float, default=POLL_S * 1000,
                        help="how often the drain is polled, in ms (default 1)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds allowed per measurement (default 300)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser.parse_args(argv)


def summarize(runs: Sequence[Drain]) -> Drain:
    """One Drain for repeated runs of one configuration: the run with the (lower) median rate,
    carrying every run's rate."""
    ordered = sorted(runs, key=lambda run: run.rate)
    middle = ordered[(len(ordered) - 1) // 2]
    return replace(middle,
                   runs=tuple(run.rate for run in runs) if len(runs) > 1 else ())


def run_drains(args: argparse.Namespace) -> list[Drain]:
    """Every configuration, `--repeat` times, the systems taking turns."""
    drains: list[Drain] = []
    for jobs in args.jobs:
        for processes in args.processes:
            # a configuration: (system, its jobs per call); dramatiq's once
            configs = [(system, per_call) for system in args.systems
                       for per_call in (args.per_call if system == "sideline" else [1])]
            runs: dict[tuple[str, int], list[Drain]] = {config: [] for config in configs}
            for _ in range(args.repeat):
                for system, per_call in configs:
                    run = measure_drain(system, jobs, processes, args.threads, args.timeout,
                                        poll_s=args.poll_ms / 1000, per_call=per_call)
                    progress(f"{system}: {run.rate:,.0f} jobs/s")
                    runs[system, per_call].append(run)
            drains.extend(summarize(runs[config]) for config in configs)
    return drains


def machine() -> dict[str, Any]:
    """What the figures depend on besides the code: cores, load, the Redis URL."""
    return {"kind": "machine", "cpus": os.cpu_count(),
            "load_1min": round(os.getloadavg()[0], 2), "redis": redis_url()}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    before = machine()
    progress(f"{before['cpus']} cpus, load average {before['load_1min']} before the runs "
             "(other work on the machine skews both systems)")
    drains: list[Drain] = []
    latencies: list[Latency] = []
    try:
        if "drain" in args.measure:
            drains = run_drains(args)
        if "latency" in args.measure and args.latency_samples > 0:
            latencies = [measure_latency(system, args.threads, args.latency_samples,
                                         args.timeout) for system in args.systems]
    except BenchError as exc:
        progress(f"FAILED: {exc}")
        return 1
    if args.json:
        print(json.dumps(before))
        print_json(drains, latencies, args.threads)
    else:
        print(f"machine: {before['cpus']} cpus, load average {before['load_1min']} at the start")
        print_table(drains, latencies, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
