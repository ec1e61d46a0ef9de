"""BatchStore contract: batches stored with their first jobs, counted by `settle`, and the
callbacks (core.batch) pushed exactly once, in the same atomic step, on every backend.

Member jobs are pushed by `push_batches`, fetched like any job and ended through the
settle port with the Settlement a worker would send (ack, retry, bury); a retried job
comes back with `move_due`, a dead one with `retry_dead`. Callback jobs go to the
"callbacks" queue, members to "default" (workflow tests: "members"). A child batch's
callback jobs are members of its parent (core.batch.add_callback): they are fetched from
"callbacks" and ended through settle like any member.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from sideline.core.batch import (
    BatchError,
    BatchFinished,
    BatchPush,
    BatchSpec,
    BatchView,
    Callback,
    NodeLink,
)
from sideline.core.payload import Payload, decode, encode
from sideline.core.ports import Backend, Delivery, Settled
from sideline.core.run import NodeStatus, RunState, RunStatus
from sideline.core.settlement import Action, NodeEvent, Settlement
from sideline.core.workflow import Chain

from .helpers import new_run, payload, sig

NOW = 1_800_000_000.0
WORKER = "w"
CALLBACKS = "callbacks"
COMPLETE, SUCCESS, DEATH = Callback.COMPLETE, Callback.SUCCESS, Callback.DEATH


# -- builders --------------------------------------------------------------------------------


def member(jid: str, bid: str, queue: str = "default") -> Payload:
    return payload(jid, queue, batch_id=bid)


def callback_entry(bid: str, event: str, queue: str = CALLBACKS) -> tuple[str, str]:
    job = Payload(name=f"on_{event}", jid=f"{bid}.{event}", queue=queue, args=[bid],
                  created_at=1.0, callback_of=bid, callback_event=event)
    return queue, encode(job)


def spec(bid: str, parent: str | None = None, events: tuple[str, ...] = tuple(Callback),
         **fields: Any) -> BatchSpec:
    return BatchSpec(bid, f"batch {bid}", parent,
                     {event: callback_entry(bid, event) for event in events},
                     {event: {"event": event, "n": 1} for event in events},
                     **fields)


def new(bid: str, *jids: str, parent: str | None = None, queue: str = "default",
        **fields: Any) -> BatchPush:
    return BatchPush(bid, spec(bid, parent, **fields),
                     tuple(member(jid, bid, queue) for jid in jids))


def more(bid: str, *jids: str) -> BatchPush:
    return BatchPush(bid, None, tuple(member(jid, bid) for jid in jids))


# -- driving member jobs through settle ------------------------------------------------------


def take(backend: Backend, queue: str = "default") -> dict[str, Delivery]:
    """Fetch every job of `queue`: jid -> its delivery, held by WORKER."""
    return {decode(d.raw).jid: d for d in backend.fetch_many(WORKER, [queue], 1000)}


def failed(delivery: Delivery, now: float, error: str) -> Payload:
    job = decode(delivery.raw)
    return attrs.evolve(job, error_class="ValueError", error_message=error, failed_at=now,
                        retry_count=job.retry_count + 1)


def succeed(backend: Backend, delivery: Delivery, now: float, **fields: Any) -> Settled:
    return backend.settle(WORKER, delivery,
                          Settlement(Action.ACK, decode(delivery.raw), **fields),
                          now)


def fail(backend: Backend, delivery: Delivery, now: float, error: str = "boom") -> Settled:
    """A failure that will be retried (in the retry set, due one second later)."""
    return backend.settle(WORKER, delivery, Settlement(
        Action.RETRY, failed(delivery, now, error), retry_at=now + 1, failed=1), now)


def die(backend: Backend, delivery: Delivery, now: float, error: str = "fatal") -> Settled:
    """A failure for good: buried in the dead set."""
    return backend.settle(WORKER, delivery, Settlement(
        Action.BURY, failed(delivery, now, error), reason="retries exhausted", failed=1), now)


def fired(backend: Backend) -> list[tuple[str | None, str | None]]:
    """The callback jobs pushed so far: (batch, event), in queue order."""
    return [(job.callback_of, job.callback_event)
            for job in (decode(raw) for raw in backend.peek(CALLBACKS, 1000))]


def member_of(backend: Backend) -> dict[str, str | None]:
    """The callback jobs queued: jid -> the batch they are a member of (their batch_id)."""
    jobs = (decode(raw) for raw in backend.peek(CALLBACKS, 1000))
    return {job.jid: job.batch_id for job in jobs}


def run_callbacks(backend: Backend, now: float) -> list[str]:
    """Fetch every queued callback job and succeed it at `now`, in queue order: their jids."""
    ran = []
    for jid, delivery in take(backend, CALLBACKS).items():
        succeed(backend, delivery, now)
        ran.append(jid)
    return ran


def view(backend: Backend, bid: str, now: float = NOW) -> BatchView:
    found = backend.get_batch(bid, now)
    assert found is not None, f"batch {bid} is missing"
    return found


def snapshot(backend: Backend, bids: tuple[str, ...], now: float) -> object:
    """Everything a refused push must leave alone."""
    return (backend.queue_sizes(), {q: backend.peek(q, 1000) for q in ("default", CALLBACKS)},
            backend.entries("scheduled"), [backend.get_batch(bid, now) for bid in bids],
            [v.state.bid for v in backend.recent_batches(0, 100, now)])


# -- push_batches and get_batch --------------------------------------------------------------


def test_push_batches_stores_the_batch_and_pushes_its_jobs(backend: Backend) -> None:
    later = member("later", "b1")
    push = attrs.evolve(new("b1", "j1", "j2", ttl_s=500, linger_s=50),
                        scheduled=((later, NOW + 30),))
    backend.push_batches([push], NOW)
    assert [decode(raw).jid for raw in backend.peek("default")] == ["j1", "j2"]
    assert [decode(raw).batch_id for raw in backend.peek("default")] == ["b1", "b1"]
    [entry] = backend.entries("scheduled")
    assert (entry.at, entry.payload) == (NOW + 30, later)
    stored = view(backend, "b1", NOW + 1)
    state = stored.state
    assert (state.bid, state.description, state.parent) == ("b1", "batch b1", None)
    assert (state.total, state.pending, state.failures, state.dead) == (
        3, {"j1", "j2", "later"}, {}, set())
    assert (state.children, state.kids_incomplete, state.kids_unsucceeded) == ([], 0, 0)
    assert state.created_at == NOW
    assert (state.complete_at, state.success_at, state.death_at) == (None, None, None)
    assert not state.invalidated
    assert stored.callbacks == {"complete": "on_complete", "success": "on_success",
                                "death": "on_death"}
    assert stored.options == {e: {"event": e, "n": 1} for e in ("complete", "success", "death")}
    assert stored.expires_at == NOW + 500
    assert stored.node is None
    assert fired(backend) == []


def test_get_batch_of_an_unknown_batch_is_none(backend: Backend) -> None:
    assert backend.get_batch("nope", NOW) is None


def test_a_batch_keeps_only_the_callbacks_it_was_given(backend: Backend) -> None:
    backend.push_batches([new("b1", "j1", events=("death",))], NOW)
    assert view(backend, "b1").callbacks == {"death": "on_death"}
    assert view(backend, "b1").options == {"death": {"event": "death", "n": 1}}
    succeed(backend, take(backend)["j1"], NOW + 1)
    state = view(backend, "b1", NOW + 1).state
    assert (state.complete_at, state.success_at) == (NOW + 1, NOW + 1)
    assert fired(backend) == []  # complete and success fired, with no job to push


def test_node_link_is_stored(backend: Backend) -> None:
    backend.push_batches([new("b1", "j1", node=NodeLink("run9", 3))], NOW)
    assert view(backend, "b1").node == NodeLink("run9", 3)


# -- the callbacks ---------------------------------------------------------------------------


def test_complete_fires_once_every_job_ran_with_failures_then_success_after_the_retry(
        backend: Backend) -> None:
    backend.push_batches([new("b1", "j1", "j2", "j3", linger_s=600)], NOW)
    jobs = take(backend)
    succeed(backend, jobs["j1"], NOW + 1)
    fail(backend, jobs["j2"], NOW + 2, "flaky")
    assert fired(backend) == []  # j3 has not run yet
    die(backend, jobs["j3"], NOW + 3, "fatal")
    state = view(backend, "b1", NOW + 3).state
    assert state.pending == {"j2", "j3"}
    assert state.failures == {"j2": ("ValueError", "flaky"), "j3": ("ValueError", "fatal")}
    assert state.dead == {"j3"}
    assert (state.complete_at, state.success_at, state.death_at) == (NOW + 3, None, NOW + 3)
    assert fired(backend) == [("b1", "death"), ("b1", "complete")]
    # j2's retry fails again: nothing fires again
    assert backend.move_due(NOW + 10) == 1
    fail(backend, take(backend)["j2"], NOW + 11, "flakier")
    assert view(backend, "b1", NOW + 11).state.failures["j2"] == ("ValueError", "flakier")
    assert fired(backend) == [("b1", "death"), ("b1", "complete")]
    # j2 succeeds on retry, j3 is retried by hand and succeeds: success fires, after complete
    assert backend.move_due(NOW + 20) == 1
    succeed(backend, take(backend)["j2"], NOW + 21)
    assert backend.retry_dead("j3", NOW + 22)
    succeed(backend, take(backend)["j3"], NOW + 23)
    stored = view(backend, "b1", NOW + 23)
    assert (stored.state.pending, stored.state.failures, stored.state.dead) == (set(), {}, set())
    assert (stored.state.complete_at, stored.state.success_at) == (NOW + 3, NOW + 23)
    assert stored.state.total == 3
    assert stored.expires_at == NOW + 23 + 600  # lingers from its success
    assert fired(backend) == [("b1", "death"), ("b1", "complete"), ("b1", "success")]


def test_all_succeed_fires_complete_then_success_together(backend: Backend) -> None:
    backend.push_batches([new("b1", "j1", "j2")], NOW)
    jobs = take(backend)
    succeed(backend, jobs["j2"], NOW + 1)
    assert fired(backend) == []
    succeed(backend, jobs["j1"], NOW + 2)
    state = view(backend, "b1", NOW + 2).state
    assert (state.complete_at, state.success_at, state.death_at) == (NOW + 2, NOW + 2, None)
    assert fired(backend) == [("b1", "complete"), ("b1", "success")]


def test_the_callback_job_is_pushed_once_to_its_queue_stamped(backend: Backend) -> None:
    callbacks = {"complete": callback_entry("b1", "complete", "hooks"),
                 "success": callback_entry("b1", "success")}
    backend.push_batches([BatchPush("b1", BatchSpec("b1", callbacks=callbacks),
                                    (member("j1", "b1"),))], NOW)
    succeed(backend, take(backend)["j1"], NOW + 5)
    [hook] = [decode(raw) for raw in backend.peek("hooks")]
    [done] = [decode(raw) for raw in backend.peek(CALLBACKS)]
    expected = decode(callback_entry("b1", "complete", "hooks")[1])
    assert hook == attrs.evolve(expected, enqueued_at=NOW + 5)
    assert (hook.name, hook.queue, hook.args) == ("on_complete", "hooks", ["b1"])
    assert (hook.callback_of, hook.callback_event) == ("b1", "complete")
    assert (done.name, done.callback_of, done.callback_event, done.enqueued_at) == (
        "on_success", "b1", "success", NOW + 5)
    assert backend.queue_sizes()["hooks"] == 1
    assert backend.queue_sizes()[CALLBACKS] == 1
    assert take(backend, "hooks").keys() == {"b1.complete"}  # a job like any other


def test_death_fires_once_even_with_two_deaths(backend: Backend) -> None:
    backend.push_batches([new("b1", "j1", "j2", "j3")], NOW)
    jobs = take(backend)
    die(backend, jobs["j1"], NOW + 1, "first")
    assert fired(backend) == [("b1", "death")]
    die(backend, jobs["j2"], NOW + 2, "second")
    assert backend.retry_dead("j1", NOW + 3)
    die(backend, take(backend)["j1"], NOW + 4, "again")
    state = view(backend, "b1", NOW + 4).state
    assert state.death_at == NOW + 1
    assert state.dead == {"j1", "j2"}
    assert state.failures == {"j1": ("ValueError", "again"), "j2": ("ValueError", "second")}
    assert fired(backend) == [("b1", "death")]
    succeed(backend, jobs["j3"], NOW + 5)  # everything ran: complete, but no success
    assert fired(backend) == [("b1", "death"), ("b1", "complete")]
    assert view(backend, "b1", NOW + 5).state.success_at is None


def test_acked_as_failed_counts_as_a_death(backend: Backend) -> None:
    backend.push_batches([new("b1", "j1")], NOW)
    delivery = take(backend)["j1"]
    backend.settle(WORKER, delivery, Settlement(Action.ACK, failed(delivery, NOW, "x"),
                                                failed=1), NOW + 1)
    assert view(backend, "b1", NOW + 1).state.dead == {"j1"}
    assert fired(backend) == [("b1", "death"), ("b1", "complete")]


def test_a_job_ending_that_is_not_pending_changes_nothing(backend: Backend) -> None:
    backend.push_batches([new("b1", "j1", "j2")], NOW)
    jobs = take(backend)
    succeed(backend, jobs["j1"], NOW + 1)
    before = view(backend, "b1", NOW + 1)
    backend.push([decode(jobs["j1"].raw)])  # a copy of j1 runs again
    again = take(backend)["j1"]
    succeed(backend, again, NOW + 2)
    backend.push([decode(jobs["j1"].raw)])
    die(backend, take(backend)["j1"], NOW + 3)  # ... and dies: not pending, so nothing
    backend.push([member("stranger", "b1")])  # not a member
    die(backend, take(backend)["stranger"], NOW + 4)
    assert view(backend, "b1", NOW + 4) == before
    assert fired(backend) == []


def test_an_unrun_job_ending_counts_nothing(backend: Backend) -> None:
    """A settlement that did not run the job (processed 0) is not an ending."""
    backend.push_batches([new("b1", "j1")], NOW)
    delivery = take(backend)["j1"]
    backend.settle(WORKER, delivery, Settlement(Action.ACK, decode(delivery.raw), processed=0),
                   NOW + 1)
    assert view(backend, "b1", NOW + 1).state.pending == {"j1"}
    assert fired(backend) == []


# -- nested batches --------------------------------------------------------------------------


def test_a_child_pushed_with_its_new_parent_holds_the_parent(backend: Backend) -> None:
    backend.push_batches([new("P", "p1"), new("C", "c1", parent="P")], NOW)
    parent, child = view(backend, "P").state, view(backend, "C").state
    assert (parent.children, parent.kids_incomplete, parent.kids_unsucceeded) == (["C"], 1, 1)
    assert (child.parent, parent.parent) == ("P", None)
    jobs = take(backend)
    succeed(backend, jobs["p1"], NOW + 1)
    assert view(backend, "P", NOW + 1).state.complete_at is None  # its child has not
    fail(backend, jobs["c1"], NOW + 2)
    # C completes; its callback job joins P, which waits for it to run
    assert fired(backend) == [("C", "complete")]
    assert member_of(backend) == {"C.complete": "P"}
    parent = view(backend, "P", NOW + 2).state
    assert (parent.kids_incomplete, parent.kids_unsucceeded) == (0, 1)
    assert (parent.total, parent.pending) == (2, {"C.complete"})
    assert (parent.complete_at, parent.success_at) == (None, None)
    assert view(backend, "C", NOW + 2).state.total == 1  # not a member of its own batch
    assert run_callbacks(backend, NOW + 3) == ["C.complete"]
    assert fired(backend) == [("P", "complete")]
    assert member_of(backend) == {"P.complete": None}  # a root's: a member of nothing
    parent = view(backend, "P", NOW + 3).state
    assert (parent.total, parent.pending, parent.failures) == (2, set(), {})
    assert (parent.complete_at, parent.success_at) == (NOW + 3, None)
    assert run_callbacks(backend, NOW + 4) == ["P.complete"]  # changes nothing
    assert view(backend, "P", NOW + 4).state == parent
    backend.move_due(NOW + 5)
    succeed(backend, take(backend)["c1"], NOW + 6)
    # C succeeds: its success callback joins P although P is complete (never refused)
    assert fired(backend) == [("C", "success")]
    assert member_of(backend) == {"C.success": "P"}
    parent = view(backend, "P", NOW + 6).state
    assert (parent.kids_unsucceeded, parent.total, parent.pending) == (0, 3, {"C.success"})
    assert (parent.complete_at, parent.success_at) == (NOW + 3, None)
    assert run_callbacks(backend, NOW + 7) == ["C.success"]
    assert fired(backend) == [("P", "success")]
    parent = view(backend, "P", NOW + 7).state
    assert (parent.pending, parent.complete_at, parent.success_at) == (set(), NOW + 3, NOW + 7)


def test_a_child_added_later_to_an_existing_parent_holds_it(backend: Backend) -> None:
    backend.push_batches([new("P", "p1", "p2")], NOW)
    jobs = take(backend)
    succeed(backend, jobs["p1"], NOW + 1)
    backend.push_batches([new("C", "c1", "c2", parent="P")], NOW + 2)
    assert view(backend, "P", NOW + 2).state.children == ["C"]
    assert view(backend, "P", NOW + 2).state.total == 2  # the child's jobs are its own
    succeed(backend, jobs["p2"], NOW + 3)
    assert fired(backend) == []  # P's jobs are done, its child is not
    jobs = take(backend)
    succeed(backend, jobs["c1"], NOW + 4)
    succeed(backend, jobs["c2"], NOW + 5)
    assert fired(backend) == [("C", "complete"), ("C", "success")]  # P waits for them
    assert member_of(backend) == {"C.complete": "P", "C.success": "P"}
    parent = view(backend, "P", NOW + 5).state
    assert (parent.total, parent.pending) == (4, {"C.complete", "C.success"})
    assert (parent.kids_incomplete, parent.kids_unsucceeded) == (0, 0)
    assert (parent.complete_at, parent.success_at) == (None, None)
    callbacks = take(backend, CALLBACKS)
    succeed(backend, callbacks["C.success"], NOW + 6)
    assert view(backend, "P", NOW + 6).state.complete_at is None  # C.complete has not run
    assert fired(backend) == []
    succeed(backend, callbacks["C.complete"], NOW + 7)
    assert fired(backend) == [("P", "complete"), ("P", "success")]
    parent = view(backend, "P", NOW + 7).state
    assert (parent.total, parent.pending) == (4, set())
    assert (parent.complete_at, parent.success_at) == (NOW + 7, NOW + 7)


def test_grandchildren_fire_up_the_whole_chain(backend: Backend) -> None:
    backend.push_batches([new("A"), new("B", parent="A"), new("C", "c1", parent="B"),
                          new("D", "d1", parent="A")], NOW)
    assert view(backend, "A").state.children == ["B", "D"]
    jobs = take(backend)
    succeed(backend, jobs["c1"], NOW + 1)
    assert fired(backend) == [("C", "complete"), ("C", "success")]
    assert member_of(backend) == {"C.complete": "B", "C.success": "B"}
    assert view(backend, "B", NOW + 1).state.pending == {"C.complete", "C.success"}
    assert run_callbacks(backend, NOW + 2) == ["C.complete", "C.success"]
    assert fired(backend) == [("B", "complete"), ("B", "success")]
    assert member_of(backend) == {"B.complete": "A", "B.success": "A"}
    middle = view(backend, "B", NOW + 2).state
    assert (middle.total, middle.complete_at, middle.success_at) == (2, NOW + 2, NOW + 2)
    succeed(backend, jobs["d1"], NOW + 3)
    assert fired(backend)[2:] == [("D", "complete"), ("D", "success")]
    top = view(backend, "A", NOW + 3).state
    assert top.pending == {"B.complete", "B.success", "D.complete", "D.success"}
    assert (top.kids_incomplete, top.kids_unsucceeded, top.complete_at) == (0, 0, None)
    assert run_callbacks(backend, NOW + 4) == ["B.complete", "B.success", "D.complete",
                                               "D.success"]
    assert fired(backend) == [("A", "complete"), ("A", "success")]
    assert member_of(backend) == {"A.complete": None, "A.success": None}
    top = view(backend, "A", NOW + 4).state
    assert (top.total, top.complete_at, top.success_at) == (4, NOW + 4, NOW + 4)


def test_a_childs_death_is_the_parents_death_once(backend: Backend) -> None:
    backend.push_batches([new("P", "p1"), new("C", "c1", "c2", parent="P"),
                          new("G", "g1", parent="C")], NOW)
    jobs = take(backend)
    die(backend, jobs["g1"], NOW + 1)
    # G's callbacks are pushed (and join C) before what they fire up the chain
    assert fired(backend) == [("G", "death"), ("G", "complete"), ("C", "death"),
                              ("P", "death")]
    # each child's callback jobs are members of its parent, the root's of nothing
    assert member_of(backend) == {"G.death": "C", "C.death": "P", "P.death": None,
                                  "G.complete": "C"}
    assert view(backend, "C", NOW + 1).state.pending == {"c1", "c2", "G.death", "G.complete"}
    assert view(backend, "P", NOW + 1).state.pending == {"p1", "C.death"}
    die(backend, jobs["c1"], NOW + 2)
    die(backend, jobs["p1"], NOW + 3)
    assert [event for event in fired(backend) if event[1] == "death"] == [
        ("G", "death"), ("C", "death"), ("P", "death")]
    assert {bid: view(backend, bid, NOW + 3).state.death_at for bid in "PCG"} == {
        "P": NOW + 1, "C": NOW + 1, "G": NOW + 1}


def test_an_empty_child_of_a_new_parent_fires_at_once_into_its_parent(
        backend: Backend) -> None:
    backend.push_batches([new("P", "p1"), new("C", parent="P")], NOW)
    assert fired(backend) == [("C", "complete"), ("C", "success")]
    assert member_of(backend) == {"C.complete": "P", "C.success": "P"}
    parent = view(backend, "P").state
    assert (parent.kids_incomplete, parent.kids_unsucceeded, parent.complete_at) == (0, 0, None)
    assert (parent.total, parent.pending) == (3, {"p1", "C.complete", "C.success"})
    succeed(backend, take(backend)["p1"], NOW + 1)
    assert fired(backend) == [("C", "complete"), ("C", "success")]  # they have not run
    assert view(backend, "P", NOW + 1).state.complete_at is None
    assert run_callbacks(backend, NOW + 2) == ["C.complete", "C.success"]
    assert fired(backend) == [("P", "complete"), ("P", "success")]
    parent = view(backend, "P", NOW + 2).state
    assert (parent.complete_at, parent.success_at) == (NOW + 2, NOW + 2)


def test_a_childs_callback_job_is_pushed_as_a_member_of_its_parent(backend: Backend) -> None:
    callbacks = {"complete": callback_entry("C", "complete", "hooks")}
    backend.push_batches([new("P", "p1"), BatchPush("C", BatchSpec("C", parent="P",
                                                                    callbacks=callbacks),
                                                    (member("c1", "C"),))], NOW)
    jobs = take(backend)
    succeed(backend, jobs["c1"], NOW + 5)
    [hook] = [decode(raw) for raw in backend.peek("hooks")]
    expected = decode(callbacks["complete"][1])
    assert expected.batch_id is None
    assert hook == attrs.evolve(expected, enqueued_at=NOW + 5, batch_id="P")
    assert (hook.queue, hook.callback_of, hook.callback_event) == ("hooks", "C", "complete")
    parent = view(backend, "P", NOW + 5).state
    assert (parent.total, parent.pending) == (2, {"p1", "C.complete"})
    assert (parent.kids_incomplete, parent.kids_unsucceeded) == (0, 0)
    child = view(backend, "C", NOW + 5).state
    assert (child.total, child.pending) == (1, set())
    assert (child.complete_at, child.success_at) == (NOW + 5, NOW + 5)
    assert backend.peek(CALLBACKS) == []  # C's success has no job: nothing joins P for it
    succeed(backend, jobs["p1"], NOW + 6)
    assert view(backend, "P", NOW + 6).state.complete_at is None  # C.complete has not run
    succeed(backend, take(backend, "hooks")["C.complete"], NOW + 7)
    parent = view(backend, "P", NOW + 7).state
    assert (parent.total, parent.pending) == (2, set())
    assert (parent.complete_at, parent.success_at) == (NOW + 7, NOW + 7)
    assert fired(backend) == [("P", "complete"), ("P", "success")]


def test_a_child_without_callback_jobs_adds_nothing_to_its_parent(backend: Backend) -> None:
    backend.push_batches([new("P", "p1"), new("C", "c1", parent="P", events=()),
                          new("D", "d1", parent="P", events=("death",))], NOW)
    jobs = take(backend)
    succeed(backend, jobs["p1"], NOW + 1)
    succeed(backend, jobs["c1"], NOW + 2)
    parent = view(backend, "P", NOW + 2).state
    assert (parent.total, parent.pending, parent.kids_incomplete, parent.kids_unsucceeded) == (
        1, set(), 1, 1)
    succeed(backend, jobs["d1"], NOW + 3)  # D's death never fired: it adds nothing either
    assert fired(backend) == [("P", "complete"), ("P", "success")]
    parent = view(backend, "P", NOW + 3).state
    assert (parent.total, parent.pending, parent.kids_incomplete, parent.kids_unsucceeded) == (
        1, set(), 0, 0)
    assert (parent.complete_at, parent.success_at) == (NOW + 3, NOW + 3)


def test_every_callback_a_child_fires_at_once_joins_its_parent_before_the_parent_fires(
        backend: Backend) -> None:
    """C's complete (no job) and success (a job) fire together: P, all of whose own work
    ran, must not complete before C's success callback job ran."""
    backend.push_batches([new("P", "p1"), new("C", "c1", parent="P", events=("success",))],
                         NOW)
    jobs = take(backend)
    succeed(backend, jobs["p1"], NOW + 1)
    succeed(backend, jobs["c1"], NOW + 2)
    assert member_of(backend) == {"C.success": "P"}
    parent = view(backend, "P", NOW + 2).state
    assert (parent.kids_incomplete, parent.kids_unsucceeded, parent.pending) == (
        0, 0, {"C.success"})
    assert (parent.complete_at, parent.success_at) == (None, None)
    assert run_callbacks(backend, NOW + 3) == ["C.success"]
    assert fired(backend) == [("P", "complete"), ("P", "success")]
    parent = view(backend, "P", NOW + 3).state
    assert (parent.complete_at, parent.success_at) == (NOW + 3, NOW + 3)


def test_a_childs_callback_job_counts_in_its_parent_as_any_member(backend: Backend) -> None:
    """It must run (succeed or fail) for the parent's complete, succeed for its success."""
    backend.push_batches([new("P"), new("C", "c1", parent="P")], NOW)
    succeed(backend, take(backend)["c1"], NOW + 1)
    callbacks = take(backend, CALLBACKS)
    assert callbacks.keys() == {"C.complete", "C.success"}
    fail(backend, callbacks["C.complete"], NOW + 2, "hook broke")
    parent = view(backend, "P", NOW + 2).state
    assert parent.failures == {"C.complete": ("ValueError", "hook broke")}
    assert parent.complete_at is None  # C.success has not run
    fail(backend, callbacks["C.success"], NOW + 3, "hook broke too")
    parent = view(backend, "P", NOW + 3).state
    assert (parent.complete_at, parent.success_at, parent.death_at) == (NOW + 3, None, None)
    assert fired(backend) == [("P", "complete")]
    assert backend.move_due(NOW + 10) == 2  # retried to their queue
    retried = take(backend, CALLBACKS)
    assert retried.keys() == {"C.complete", "C.success", "P.complete"}
    succeed(backend, retried["C.complete"], NOW + 11)
    assert view(backend, "P", NOW + 11).state.success_at is None
    succeed(backend, retried["C.success"], NOW + 12)
    parent = view(backend, "P", NOW + 12).state
    assert (parent.pending, parent.failures, parent.success_at) == (set(), {}, NOW + 12)
    assert fired(backend) == [("P", "success")]


def test_a_childs_callback_job_that_dies_is_a_death_of_its_parent(backend: Backend) -> None:
    backend.push_batches([new("P", "p1"), new("C", "c1", parent="P")], NOW)
    jobs = take(backend)
    succeed(backend, jobs["c1"], NOW + 1)
    callbacks = take(backend, CALLBACKS)
    die(backend, callbacks["C.complete"], NOW + 2, "hook died")
    parent = view(backend, "P", NOW + 2).state
    assert (parent.dead, parent.death_at) == ({"C.complete"}, NOW + 2)
    assert parent.failures == {"C.complete": ("ValueError", "hook died")}
    assert view(backend, "C", NOW + 2).state.death_at is None  # not a job of C
    assert fired(backend) == [("P", "death")]
    succeed(backend, callbacks["C.success"], NOW + 3)
    succeed(backend, jobs["p1"], NOW + 4)  # everything ran: complete, no success
    parent = view(backend, "P", NOW + 4).state
    assert (parent.complete_at, parent.success_at) == (NOW + 4, None)
    assert backend.retry_dead("C.complete", NOW + 5)
    succeed(backend, take(backend, CALLBACKS)["C.complete"], NOW + 6)
    parent = view(backend, "P", NOW + 6).state
    assert (parent.pending, parent.dead, parent.success_at) == (set(), set(), NOW + 6)


def test_a_childs_callback_job_may_add_to_its_parent_whose_own_work_ran(
        backend: Backend) -> None:
    """Every job and child of P has ended, but the child's callback job running is a
    member of P: P is not complete, so the callback may add jobs and a child batch."""
    backend.push_batches([new("P", "p1"), new("C", "c1", parent="P")], NOW)
    jobs = take(backend)
    succeed(backend, jobs["p1"], NOW + 1)
    succeed(backend, jobs["c1"], NOW + 2)
    callbacks = take(backend, CALLBACKS)
    # C.success runs: it adds a job and a child batch to P
    backend.push_batches([more("P", "p2"), new("D", "d1", parent="P")], NOW + 3)
    succeed(backend, callbacks["C.success"], NOW + 4)
    succeed(backend, callbacks["C.complete"], NOW + 4)
    parent = view(backend, "P", NOW + 4).state
    assert (parent.total, parent.pending, parent.children) == (4, {"p2"}, ["C", "D"])
    assert (parent.kids_incomplete, parent.complete_at) == (1, None)
    assert fired(backend) == []
    jobs = take(backend)
    succeed(backend, jobs["p2"], NOW + 5)
    succeed(backend, jobs["d1"], NOW + 6)
    assert member_of(backend) == {"D.complete": "P", "D.success": "P"}
    assert run_callbacks(backend, NOW + 7) == ["D.complete", "D.success"]
    parent = view(backend, "P", NOW + 7).state
    assert (parent.total, parent.pending) == (6, set())
    assert (parent.complete_at, parent.success_at) == (NOW + 7, NOW + 7)
    assert fired(backend) == [("P", "complete"), ("P", "success")]


# -- refusals --------------------------------------------------------------------------------


def test_additions_to_a_complete_batch_push_nothing(backend: Backend) -> None:
    backend.push_batches([new("done", "j1"), new("open", "o1")], NOW)
    fail(backend, take(backend)["j1"], NOW + 1)  # complete (every job ran), not succeeded
    assert view(backend, "done", NOW + 1).state.complete_at == NOW + 1
    before = snapshot(backend, ("done", "open", "fresh"), NOW + 2)
    later = ((member("s1", "done"), NOW + 50),)
    for pushes in ([more("done", "j2")],
                   [BatchPush("done", None, (), later)],
                   [new("fresh", "f1", parent="done")],
                   [new("fresh", "f1"), more("open", "o2"), more("done", "j2")],
                   [more("open", "o2"), new("fresh", "f1", parent="done")]):
        with pytest.raises(BatchFinished):
            backend.push_batches(pushes, NOW + 2)
        assert snapshot(backend, ("done", "open", "fresh"), NOW + 2) == before
    assert fired(backend) == [("done", "complete")]


def test_unknown_and_expired_batches_are_refused(backend: Backend) -> None:
    backend.push_batches([new("short", "s1", ttl_s=10), new("open", "o1")], NOW)
    before = snapshot(backend, ("short", "open", "fresh"), NOW + 10)
    for pushes in ([more("nope", "x1")],
                   [more("short", "s2")],  # expired: expires_at <= now
                   [new("fresh", "f1", parent="nope")],
                   [new("fresh", "f1"), more("open", "o2"), new("kid", parent="short")]):
        with pytest.raises(BatchError) as raised:
            backend.push_batches(pushes, NOW + 10)
        assert not isinstance(raised.value, BatchFinished)
        assert snapshot(backend, ("short", "open", "fresh"), NOW + 10) == before
    assert backend.get_batch("short", NOW + 10) is None


def test_a_new_batch_with_the_bid_of_a_live_one_is_refused(backend: Backend) -> None:
    backend.push_batches([new("b1", "j1")], NOW)
    with pytest.raises(BatchError):
        backend.push_batches([new("b1", "j2")], NOW + 1)
    assert view(backend, "b1", NOW + 1).state.pending == {"j1"}
    assert [decode(raw).jid for raw in backend.peek("default")] == ["j1"]


def test_additions_to_an_open_batch_count_in(backend: Backend) -> None:
    backend.push_batches([new("b1", "j1")], NOW)
    jobs = take(backend)
    succeed(backend, jobs["j1"], NOW + 1)
    backend.push_batches([new("b2", "k1")], NOW + 2)
    succeed(backend, take(backend)["k1"], NOW + 3)  # not the last: b2 gets more
    backend.push_batches([new("b3", "k1", "k2")], NOW + 2)
    fail(backend, take(backend)["k1"], NOW + 3)  # k2 has not run: b3 is open
    backend.push_batches([more("b3", "k3", "k4")], NOW + 4)
    state = view(backend, "b3", NOW + 4).state
    assert (state.total, state.pending) == (4, {"k1", "k2", "k3", "k4"})
    assert state.failures == {"k1": ("ValueError", "boom")}
    assert ("b3", "complete") not in fired(backend)


# -- empty batches, expiry -------------------------------------------------------------------


def test_an_empty_batch_fires_complete_and_success_at_creation(backend: Backend) -> None:
    backend.push_batches([new("empty", ttl_s=1000, linger_s=60)], NOW)
    stored = view(backend, "empty")
    assert (stored.state.total, stored.state.complete_at, stored.state.success_at) == (
        0, NOW, NOW)
    assert stored.expires_at == NOW + 60
    assert fired(backend) == [("empty", "complete"), ("empty", "success")]
    with pytest.raises(BatchFinished):
        backend.push_batches([more("empty", "late")], NOW + 1)
    assert backend.queue_sizes().get("default", 0) == 0


def test_ttl_counts_from_the_last_addition(backend: Backend) -> None:
    backend.push_batches([new("b1", "j1", ttl_s=100)], NOW)
    assert view(backend, "b1").expires_at == NOW + 100
    backend.push_batches([more("b1", "j2")], NOW + 50)
    assert view(backend, "b1", NOW + 50).expires_at == NOW + 150
    assert backend.get_batch("b1", NOW + 149.5) is not None
    assert backend.get_batch("b1", NOW + 150) is None
    # its jobs may still run: their endings count nowhere and fire nothing
    jobs = take(backend)
    succeed(backend, jobs["j1"], NOW + 151)
    succeed(backend, jobs["j2"], NOW + 152)
    assert fired(backend) == []
    assert backend.get_batch("b1", NOW + 152) is None


def test_a_new_child_pushes_back_its_parents_expiry_too(backend: Backend) -> None:
    """Like an addition of jobs to the parent: to now + the parent's own ttl_s (never
    earlier than it was); a grandparent is not touched."""
    backend.push_batches([new("P", "p1", ttl_s=100)], NOW)
    backend.push_batches([new("C", "c1", parent="P", ttl_s=1000)], NOW + 50)
    assert view(backend, "P", NOW + 50).expires_at == NOW + 150
    assert view(backend, "C", NOW + 50).expires_at == NOW + 1050
    assert backend.get_batch("P", NOW + 120) is not None  # it would have expired at NOW + 100
    backend.push_batches([new("G", "g1", parent="C", ttl_s=10)], NOW + 60)
    assert view(backend, "C", NOW + 60).expires_at == NOW + 1060
    assert view(backend, "P", NOW + 60).expires_at == NOW + 150
    assert view(backend, "G", NOW + 60).expires_at == NOW + 70
    backend.push_batches([new("K", parent="P", ttl_s=5000)], NOW + 70)  # empty: succeeds
    assert view(backend, "P", NOW + 70).expires_at == NOW + 170


def test_an_expired_parent_fires_nothing_when_its_child_does(backend: Backend) -> None:
    backend.push_batches([new("P", "p1", ttl_s=100), new("C", "c1", parent="P", ttl_s=1000)],
                         NOW)
    jobs = take(backend)
    succeed(backend, jobs["p1"], NOW + 1)
    succeed(backend, jobs["c1"], NOW + 200)  # P expired at NOW + 100
    assert fired(backend) == [("C", "complete"), ("C", "success")]
    assert member_of(backend) == {"C.complete": None, "C.success": None}  # members of nothing
    assert backend.get_batch("P", NOW + 200) is None


def test_linger_applies_after_success(backend: Backend) -> None:
    backend.push_batches([new("b1", "j1", ttl_s=1000, linger_s=20)], NOW)
    succeed(backend, take(backend)["j1"], NOW + 10)
    assert view(backend, "b1", NOW + 10).expires_at == NOW + 30
    assert backend.get_batch("b1", NOW + 29.5) is not None
    assert backend.get_batch("b1", NOW + 30) is None
    assert backend.recent_batches(0, 10, NOW + 30) == []


def test_complete_without_success_keeps_the_ttl(backend: Backend) -> None:
    backend.push_batches([new("b1", "j1", ttl_s=1000, linger_s=20)], NOW)
    fail(backend, take(backend)["j1"], NOW + 10)
    assert view(backend, "b1", NOW + 10).expires_at == NOW + 1000


# -- recent_batches, invalidate_batch --------------------------------------------------------


def test_recent_batches_newest_first_paged_skipping_expired(backend: Backend) -> None:
    for i, ttl_s in enumerate((1000, 10, 1000, 10, 1000, 1000)):
        backend.push_batches([new(f"b{i}", f"j{i}", ttl_s=ttl_s)], NOW + i)
    at = NOW + 100  # b1 and b3 expired
    assert [v.state.bid for v in backend.recent_batches(0, 10, at)] == ["b5", "b4", "b2", "b0"]
    assert [v.state.bid for v in backend.recent_batches(0, 2, at)] == ["b5", "b4"]
    assert [v.state.bid for v in backend.recent_batches(2, 2, at)] == ["b2", "b0"]
    assert [v.state.bid for v in backend.recent_batches(3, 5, at)] == ["b0"]
    assert backend.recent_batches(4, 5, at) == []
    assert backend.recent_batches(0, 10, at)[0] == view(backend, "b5", at)


def test_recent_batches_pages_count_live_batches_only(backend: Backend) -> None:
    """An expired batch newer than the page start does not shift the page."""
    for i, ttl_s in enumerate((1000, 1000, 1000, 10, 10)):
        backend.push_batches([new(f"b{i}", f"j{i}", ttl_s=ttl_s)], NOW + i)
    at = NOW + 100
    assert [v.state.bid for v in backend.recent_batches(1, 1, at)] == ["b1"]
    assert [v.state.bid for v in backend.recent_batches(1, 5, at)] == ["b1", "b0"]
    assert [v.state.bid for v in backend.recent_batches(0, 1, at)] == ["b2"]


def test_batches_created_together_list_in_the_same_order_everywhere(backend: Backend) -> None:
    """Same creation time: by bid, descending (as a Redis sorted set lists them)."""
    backend.push_batches([new("m"), new("a", parent="m"), new("z", parent="m")], NOW)
    assert [v.state.bid for v in backend.recent_batches(0, 10, NOW)] == ["z", "m", "a"]


def test_invalidate_batch(backend: Backend) -> None:
    backend.push_batches([new("b1", "j1", ttl_s=100)], NOW)
    assert backend.invalidate_batch("b1", NOW + 1)
    stored = view(backend, "b1", NOW + 1)
    assert stored.state.invalidated
    assert stored.state.pending == {"j1"}  # nothing else changes
    assert backend.invalidate_batch("b1", NOW + 2)  # again: still True
    assert not backend.invalidate_batch("nope", NOW + 2)
    assert not backend.invalidate_batch("b1", NOW + 100)  # expired
    # callbacks still fire as the jobs end (on a fresh invalidated batch)
    backend.push_batches([new("b2", "k1")], NOW + 200)
    assert backend.invalidate_batch("b2", NOW + 200)
    succeed(backend, take(backend)["k1"], NOW + 201)
    assert fired(backend) == [("b2", "complete"), ("b2", "success")]


# -- a workflow step that opened batches -----------------------------------------------------


def started_step(backend: Backend) -> Delivery:
    """Run "run1" (A then B) created; A's job fetched."""
    state, transition = new_run(Chain(sig("A"), sig("B")), now=NOW, ttl_s=3600)
    backend.create_run(state, transition, NOW)
    [delivery] = take(backend).values()
    assert decode(delivery.raw).jid == "run1.0"
    return delivery


def step_done(backend: Backend, delivery: Delivery, now: float, *bids: str) -> Settled:
    """Step A succeeded after opening `bids`."""
    return succeed(backend, delivery, now, node=NodeEvent.SUCCEEDED, await_batches=bids)


def run_of(backend: Backend, now: float) -> RunState:
    state = backend.get_run("run1", now)
    assert isinstance(state, RunState)
    return state


def test_a_step_waits_for_its_batch_to_succeed(backend: Backend) -> None:
    delivery = started_step(backend)
    link = NodeLink("run1", 0)
    backend.push_batches([new("fan", "m1", "m2", queue="members", node=link)], NOW + 1)
    settled = step_done(backend, delivery, NOW + 2, "fan")
    assert settled.transition.releases == ()
    run = run_of(backend, NOW + 2)
    assert run.nodes[0] is not NodeStatus.SUCCEEDED
    assert run.nodes[1] is NodeStatus.PENDING
    assert backend.peek("default") == []
    jobs = take(backend, "members")
    fail(backend, jobs["m1"], NOW + 3)  # complete is not enough
    succeed(backend, jobs["m2"], NOW + 4)
    assert run_of(backend, NOW + 4).nodes == [run.nodes[0], NodeStatus.PENDING]
    assert backend.peek("default") == []
    backend.move_due(NOW + 10)
    succeed(backend, take(backend, "members")["m1"], NOW + 11)
    run = run_of(backend, NOW + 11)
    assert run.nodes == [NodeStatus.SUCCEEDED, NodeStatus.QUEUED]
    assert run.status is RunStatus.RUNNING
    assert [decode(raw).jid for raw in backend.peek("default")] == ["run1.1"]
    assert fired(backend) == [("fan", "complete"), ("fan", "success")]


def test_a_step_waits_for_every_batch_it_opened(backend: Backend) -> None:
    delivery = started_step(backend)
    link = NodeLink("run1", 0)
    backend.push_batches([new("one", "m1", queue="members", node=link)], NOW + 1)
    backend.push_batches([new("two", "m2", queue="members", node=link)], NOW + 1)
    step_done(backend, delivery, NOW + 2, "one", "two")
    jobs = take(backend, "members")
    succeed(backend, jobs["m2"], NOW + 3)
    assert run_of(backend, NOW + 3).nodes[1] is NodeStatus.PENDING
    succeed(backend, jobs["m1"], NOW + 4)
    assert run_of(backend, NOW + 4).nodes == [NodeStatus.SUCCEEDED, NodeStatus.QUEUED]


def test_a_step_whose_batch_succeeded_already_completes_at_once(backend: Backend) -> None:
    delivery = started_step(backend)
    backend.push_batches([new("fan", "m1", queue="members", node=NodeLink("run1", 0))], NOW + 1)
    succeed(backend, take(backend, "members")["m1"], NOW + 2)
    assert run_of(backend, NOW + 2).nodes[1] is NodeStatus.PENDING  # the step has not ended
    settled = step_done(backend, delivery, NOW + 3, "fan")
    assert [r.node_id for r in settled.transition.releases] == [1]
    assert run_of(backend, NOW + 3).nodes == [NodeStatus.SUCCEEDED, NodeStatus.QUEUED]


def test_a_step_waiting_for_an_empty_batch_completes_at_once(backend: Backend) -> None:
    delivery = started_step(backend)
    backend.push_batches([new("fan", node=NodeLink("run1", 0))], NOW + 1)
    step_done(backend, delivery, NOW + 2, "fan")
    assert run_of(backend, NOW + 2).nodes == [NodeStatus.SUCCEEDED, NodeStatus.QUEUED]


def assert_step_died(backend: Backend, now: float, bid: str, detail: str) -> None:
    run = run_of(backend, now)
    assert run.status is RunStatus.FAILED
    assert run.nodes == [NodeStatus.DEAD, NodeStatus.SKIPPED]
    error = run.errors[0]
    assert error.error_class == "BatchJobDied"
    assert error.error_message is not None
    assert error.error_message.startswith(f"batch {bid}: ")
    assert detail in error.error_message
    assert [decode(raw).jid for raw in backend.peek(CALLBACKS)].count("run1.failure") == 1
    assert backend.peek("default") == []


def test_a_step_dies_when_a_job_of_its_batch_dies(backend: Backend) -> None:
    delivery = started_step(backend)
    backend.push_batches([new("fan", "m1", "m2", queue="members", node=NodeLink("run1", 0))],
                         NOW + 1)
    step_done(backend, delivery, NOW + 2, "fan")
    jobs = take(backend, "members")
    die(backend, jobs["m2"], NOW + 3, "fatal")
    assert_step_died(backend, NOW + 3, "fan", "job m2 died (ValueError: fatal)")
    die(backend, jobs["m1"], NOW + 4)  # a second death changes nothing more
    assert [decode(raw).jid for raw in backend.peek(CALLBACKS)].count("run1.failure") == 1


def test_a_step_whose_batch_died_already_dies_at_once(backend: Backend) -> None:
    delivery = started_step(backend)
    backend.push_batches([new("fan", "m1", queue="members", node=NodeLink("run1", 0))], NOW + 1)
    die(backend, take(backend, "members")["m1"], NOW + 2, "fatal")
    assert run_of(backend, NOW + 2).status is RunStatus.RUNNING  # the step has not ended
    step_done(backend, delivery, NOW + 3, "fan")
    assert_step_died(backend, NOW + 3, "fan", "job m1 died (ValueError: fatal)")


def test_a_step_dies_when_a_job_of_a_child_of_its_batch_dies(backend: Backend) -> None:
    delivery = started_step(backend)
    backend.push_batches([new("fan", "m1", queue="members", node=NodeLink("run1", 0)),
                          new("kid", "k1", parent="fan", queue="members")], NOW + 1)
    step_done(backend, delivery, NOW + 2, "fan")
    die(backend, take(backend, "members")["k1"], NOW + 3)
    assert_step_died(backend, NOW + 3, "fan", "a job of a child batch died")


def test_a_step_killed_by_its_batch_completes_if_the_batch_later_succeeds(
        backend: Backend) -> None:
    """The dead job retried by hand succeeds: the batch succeeds, and the step it killed
    succeeds late (core.run.plan_complete of a dead node: the run runs again)."""
    delivery = started_step(backend)
    backend.push_batches([new("fan", "m1", "m2", queue="members", node=NodeLink("run1", 0))],
                         NOW + 1)
    step_done(backend, delivery, NOW + 2, "fan")
    jobs = take(backend, "members")
    die(backend, jobs["m1"], NOW + 3)
    succeed(backend, jobs["m2"], NOW + 4)
    assert run_of(backend, NOW + 4).status is RunStatus.FAILED
    assert backend.retry_dead("m1", NOW + 5)
    succeed(backend, take(backend, "members")["m1"], NOW + 6)
    run = run_of(backend, NOW + 6)
    assert (run.status, run.nodes) == (RunStatus.RUNNING,
                                       [NodeStatus.SUCCEEDED, NodeStatus.QUEUED])
    assert [decode(raw).jid for raw in backend.peek("default")] == ["run1.1"]


def test_a_batch_of_a_step_that_has_not_ended_moves_nothing(backend: Backend) -> None:
    """The batch's death before its step ends (or if the step itself fails) leaves the
    run to the step's own ending."""
    started_step(backend)
    backend.push_batches([new("fan", "m1", queue="members", node=NodeLink("run1", 0))], NOW + 1)
    die(backend, take(backend, "members")["m1"], NOW + 2)
    run = run_of(backend, NOW + 2)
    assert (run.status, run.nodes[1]) == (RunStatus.RUNNING, NodeStatus.PENDING)
    assert run.errors == {}


def test_the_member_ending_that_completes_a_step_returns_the_steps_transition(
        backend: Backend) -> None:
    delivery = started_step(backend)
    backend.push_batches([new("fan", "m1", queue="members", node=NodeLink("run1", 0))], NOW + 1)
    step_done(backend, delivery, NOW + 2, "fan")
    settled = succeed(backend, take(backend, "members")["m1"], NOW + 3)
    assert [r.node_id for r in settled.transition.releases] == [1]


def test_a_step_waits_for_the_callback_jobs_of_its_batchs_children(backend: Backend) -> None:
    """They are members of its batch: the ending of the last one completes the step, and
    its settle returns the step's transition."""
    delivery = started_step(backend)
    backend.push_batches([new("fan", "m1", queue="members", node=NodeLink("run1", 0)),
                          new("kid", "k1", parent="fan", queue="members")], NOW + 1)
    step_done(backend, delivery, NOW + 2, "fan")
    jobs = take(backend, "members")
    succeed(backend, jobs["m1"], NOW + 3)
    settled = succeed(backend, jobs["k1"], NOW + 4)
    assert settled.transition.releases == ()
    assert member_of(backend) == {"kid.complete": "fan", "kid.success": "fan"}
    callbacks = take(backend, CALLBACKS)
    settled = succeed(backend, callbacks["kid.complete"], NOW + 5)
    assert settled.transition.releases == ()
    assert run_of(backend, NOW + 5).nodes[1] is NodeStatus.PENDING
    assert backend.peek("default") == []
    settled = succeed(backend, callbacks["kid.success"], NOW + 6)
    assert [r.node_id for r in settled.transition.releases] == [1]
    assert run_of(backend, NOW + 6).nodes == [NodeStatus.SUCCEEDED, NodeStatus.QUEUED]
    assert [decode(raw).jid for raw in backend.peek("default")] == ["run1.1"]
    assert view(backend, "fan", NOW + 6).state.success_at == NOW + 6
