"""MemoryStore contract: per-run key/value memory (write, read, clear, expiry)."""

from __future__ import annotations

import time

from sideline.core.ports import Backend

NOW = 1_000.0


def test_write_then_read_the_keys_asked_for(backend: Backend) -> None:
    backend.write("r1", {"doc_id": 7, "text": "hello", "tags": ["a", "b"]}, 60, NOW)
    assert backend.read("r1", ["doc_id", "tags", "absent"], NOW) == {"doc_id": 7, "tags": ["a", "b"]}
    assert backend.read("r1", None, NOW) == {"doc_id": 7, "text": "hello", "tags": ["a", "b"]}
    assert backend.read("r1", [], NOW) == {}


def test_values_round_trip_as_json(backend: Backend) -> None:
    values = {"none": None, "flag": False, "n": -3, "x": 0.25, "nested": {"a": [1, {"b": None}]},
              "unicode": "été ✓", "empty": ""}
    backend.write("r1", values, 60, NOW)
    assert backend.read("r1", list(values), NOW) == values


def test_last_write_wins_and_other_keys_stay(backend: Backend) -> None:
    backend.write("r1", {"a": 1, "b": 2}, 60, NOW)
    backend.write("r1", {"a": 10, "c.x": 3}, 60, NOW)
    assert backend.read("r1", None, NOW) == {"a": 10, "b": 2, "c.x": 3}


def test_runs_are_isolated_and_clear_forgets_one(backend: Backend) -> None:
    backend.write("r1", {"a": 1}, 60, NOW)
    backend.write("r2", {"a": 2}, 60, NOW)
    backend.clear("r1")
    backend.clear("never-written")
    assert backend.read("r1", ["a"], NOW) == {}
    assert backend.read("r2", ["a"], NOW) == {"a": 2}


def test_unknown_run_reads_empty(backend: Backend) -> None:
    assert backend.read("nobody", ["a"], NOW) == {}
    assert backend.read("nobody", None, NOW) == {}


def test_empty_write_extends_existing_memory_only(backend: Backend) -> None:
    backend.write("absent", {}, 60, NOW)
    assert backend.read("absent", None, NOW) == {}
    now = time.time()
    backend.write("r1", {"a": 1}, 0.3, now)
    backend.write("r1", {}, 60, now)  # pushed back: survives the first ttl
    time.sleep(0.4)
    assert backend.read("r1", ["a"], time.time()) == {"a": 1}


def test_memory_expires_ttl_after_its_last_write(backend: Backend) -> None:
    now = time.time()
    backend.write("r1", {"a": 1}, 0.3, now)
    backend.write("r2", {"a": 2}, 60, now)
    assert backend.read("r1", ["a"], now) == {"a": 1}
    time.sleep(0.4)
    later = time.time()
    assert backend.read("r1", ["a"], later) == {}
    assert backend.read("r1", None, later) == {}
    assert backend.read("r2", ["a"], later) == {"a": 2}
    backend.write("r1", {"b": 2}, 60, later)  # expired memory starts afresh
    assert backend.read("r1", None, later) == {"b": 2}


def test_a_shorter_ttl_never_shortens_the_expiry(backend: Backend) -> None:
    now = time.time()
    backend.write("r1", {"a": 1}, 60, now)
    backend.write("r1", {"b": 2}, 0.2, now)
    time.sleep(0.3)
    assert backend.read("r1", None, time.time()) == {"a": 1, "b": 2}
