"""benchmarks/run.py runs end to end on both backends and prints the documented JSON lines.

Only the shape of the output is checked (names, fields, positive numbers): timings depend
on the machine, so no figure is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import require_redis

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"
TIMEOUT_S = 120

EXPECTED: dict[str, tuple[str, ...]] = {
    "enqueue": ("jobs", "seconds", "jobs_per_s"),
    "enqueue_bulk": ("jobs", "seconds", "jobs_per_s"),
    "noop_throughput": ("jobs", "seconds", "jobs_per_s"),
    "fanin": ("width", "seconds"),
    "chain": ("length", "seconds"),
    "payload_bytes": ("length", "bytes", "payload_bytes_first", "payload_bytes_last"),
}
REDIS_ONLY: dict[str, tuple[str, ...]] = {
    # --quick: heartbeat every 0.5 s, TTL 1.5 s, so the kill-to-restart time stays short.
    "recovery": ("seconds", "heartbeat_ttl_s", "target_seconds", "started_after_expiry_s"),
}


def _run(backend: str) -> list[dict[str, Any]]:
    command = [sys.executable, str(RUN), "--backend", backend, "--quick", "--json"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S,
                                cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "error"},
                                check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(command)} did not finish within {TIMEOUT_S} s\n"
                    f"--- stderr\n{exc.stderr!r}")
    assert result.returncode == 0, (
        f"benchmarks exited with {result.returncode}\n--- stdout\n{result.stdout}\n"
        f"--- stderr\n{result.stderr}")
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines, f"no output\n--- stderr\n{result.stderr}"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
    return parsed


def _check(results: list[dict[str, Any]], backend: str) -> None:
    expected = {**EXPECTED, **(REDIS_ONLY if backend == "redis" else {})}
    by_name = {result["name"]: result for result in results}
    assert sorted(by_name) == sorted(expected), f"benchmarks printed {sorted(by_name)}"
    assert len(results) == len(expected), "a benchmark printed more than one line"
    for name, fields in expected.items():
        result = by_name[name]
        assert result["backend"] == backend
        for field in fields:
            value = result.get(field)
            assert isinstance(value, int | float), f"{name}.{field} is {value!r}, not a number"
            assert not isinstance(value, bool), f"{name}.{field} is a bool, not a number"
            assert value > 0, f"{name}.{field} is {value!r}, not positive"


def test_benchmarks_run_on_memory() -> None:
    _check(_run("memory"), "memory")


@pytest.mark.redis
def test_benchmarks_run_on_redis() -> None:
    require_redis()
    results = _run("redis")
    _check(results, "redis")
    recovery = next(result for result in results if result["name"] == "recovery")
    assert recovery["heartbeat_ttl_s"] == 1.5, "--quick must use short heartbeat settings"


@pytest.mark.redis
def test_the_peer_comparison_runs_its_sideline_side() -> None:
    # dramatiq is not a dependency: only sideline's drain and latency are run here.
    require_redis()
    command = [sys.executable, str(ROOT / "benchmarks" / "peers" / "compare.py"),
               "--systems", "sideline", "--jobs", "300", "--processes", "1,2",
               "--jobs-per-call", "1,8", "--latency-samples", "5", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S,
                            cwd=ROOT, check=False)
    assert result.returncode == 0, f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    drains = [line for line in lines if line["kind"] == "drain"]
    assert sorted((d["processes"], d["per_call"]) for d in drains) == [
        (1, 1), (1, 8), (2, 1), (2, 8)]
    assert all(d["system"] == "sideline" and d["rate"] > 0 for d in drains)
    latency = next(line for line in lines if line["kind"] == "latency")
    assert latency["samples"] == 5
    assert 0 < latency["median_ms"] <= latency["p99_ms"]


@pytest.mark.redis
def test_the_batch_benchmark_runs() -> None:
    require_redis()
    # enough jobs that the drain outlasts the benchmark's first poll on a fast machine
    command = [sys.executable, str(ROOT / "benchmarks" / "batches.py"), "--jobs", "2000",
               "--repeat", "1", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S,
                            cwd=ROOT, check=False)
    assert result.returncode == 0, f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["plain_rate"] > 0
    assert summary["batch_rate"] > 0
    assert summary["callback_ms"] is not None


@pytest.mark.redis
def test_the_dashboard_benchmark_runs() -> None:
    require_redis()
    command = [sys.executable, str(ROOT / "benchmarks" / "dashboard.py"), "--entries", "200",
               "--repeat", "2", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S,
                            cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "error"}, check=False)
    assert result.returncode == 0, f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [line["path"] for line in lines] == [
        "/dead?page=1", "/dead?page=4", "/dead?page=8", "/dead/entry/bench-000100", "/",
        "/queues"]
    assert all(line["status"] == 200 and line["entries"] == 200 for line in lines)
    assert all(0 < line["min_ms"] <= line["median_ms"] <= line["max_ms"] for line in lines)
    assert "deleted bench-dashboard-" in result.stderr  # its namespace is gone


@pytest.mark.redis
def test_the_results_benchmark_runs() -> None:
    require_redis()
    command = [sys.executable, str(ROOT / "benchmarks" / "results.py"), "--jobs", "20",
               "--idle-s", "1", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S,
                            cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "error"}, check=False)
    assert result.returncode == 0, f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    lines = {line["name"]: line for line in map(json.loads, result.stdout.splitlines())}
    end = lines["end_to_result"]
    assert end["jobs"] == 20
    assert 0 < end["median_ms"] <= end["p99_ms"] <= end["max_ms"]
    idle = lines["idle_wait"]
    assert idle["seconds"] >= 1
    assert 0 < idle["commands_per_s"] < 100


@pytest.mark.redis
def test_the_limits_benchmark_runs() -> None:
    require_redis()
    # enough jobs that the drain outlasts the benchmark's first poll on a fast machine
    command = [sys.executable, str(ROOT / "benchmarks" / "limits.py"), "--jobs", "3000",
               "--keys", "10", "--repeat", "1", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S,
                            cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "error"}, check=False)
    assert result.returncode == 0, f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [(line["kind"], line["jobs"]) for line in lines[:-1]] == [("plain", 3000),
                                                                     ("limited", 3000)]
    summary = lines[-1]
    assert summary["plain_rate"] > 0
    assert summary["limited_rate"] > 0
    assert summary["target_overhead"] == 0.15
    assert result.stderr.count("deleted bench-limits-") == 2  # both namespaces are gone


@pytest.mark.redis
def test_the_cost_benchmark_runs() -> None:
    require_redis()
    command = [sys.executable, str(ROOT / "benchmarks" / "cost.py"), "--threads", "1,2",
               "--jobs-per-call", "1,8", "--window-s", "0.5", "--warmup-s", "0.2", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S,
                            cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "error"}, check=False)
    assert result.returncode == 0, f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [(row["threads"], row["jobs_per_call"]) for row in rows] == [
        (1, 1), (2, 1), (1, 8), (2, 8)]
    for row in rows:
        assert row["jobs_per_s"] > 0
        assert row["worker_user_us"] > 0
        assert row["redis_us"] > 0
        assert row["redis_commands"] >= row["redis_calls"]
        if row["jobs_per_call"] == 1:
            assert 0.5 <= row["redis_calls"] <= 3  # about one call per job (settle hands on)
        else:
            assert row["redis_calls"] <= 0.5  # eight jobs' acks and next jobs per call
