"""Batches (core.batch, both BatchStores) against a small independent model.

A RuleBasedStateMachine pushes random batch trees (a root with 0-4 jobs and 0-3 child
batches, at most 3 levels, some empty), adds jobs and child batches to random batches
(some of them complete already: refused), and ends random jobs in a random order through
`settle`: a success, a failure that will be retried, a death (buried, or acked as
failed), the success of a dead job retried by hand, and endings of jobs that already
succeeded. The jobs it ends are the member jobs and the callback jobs that fired: a child
batch's callback jobs are members of its parent (as in Sidekiq Pro), a root batch's are
members of nothing (their endings count nowhere). Every step runs on a MemoryBackend and
on a RedisBackend over fakeredis (the Lua scripts) side by side.

The model below does not use core.batch: it keeps each job's last ending ("queued",
"retrying", "dead", "ok") and says, bottom-up from the leaves after each step, which
callbacks are due: `death` once any job of the batch or of a batch under it died,
`complete` once every job ran (is not "queued") and every child is complete, `success`
once every job is "ok" and every child succeeded; each at most once, in that order within
one step. A callback that fires in a child batch adds its callback job to the parent's
jobs ("queued") before the parent is looked at. After every step it checks, on both
backends, that (a) each callback fired exactly when the model says and never twice (the
callback jobs' `enqueued_at`, and the fire times in get_batch), (b) the two backends'
get_batch agree, and agree with the model's counters (for the batches the step could
change; every batch, read through recent_batches, every FULL_CHECK_EVERY steps), and (c)
the callback jobs in the queue, batch by batch, are the model's, each as the model
builds it (a member of the parent batch, or of none), and the same, in the same order,
on both backends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)
from tests.support import fake_redis_backend

from sideline.adapters.memory import MemoryBackend
from sideline.core.batch import BatchFinished, BatchPush, BatchSpec, BatchView
from sideline.core.payload import Payload, decode, encode
from sideline.core.ports import Backend, Delivery
from sideline.core.settlement import Action, Settlement

WORKER = "w1"
QUEUE = "default"
CALLBACKS = "callbacks"
EVENTS = ("death", "complete", "success")
"""The callbacks in the order they fire within one step."""
MAX_BATCHES = 12
FULL_CHECK_EVERY = 4
"""Every batch is read (recent_batches) every 4th step; the batches a step could change,
every step (get_batch): reading them all each time would triple the run time."""


@attrs.frozen
class Tree:
    """A batch to push: its number of jobs and its child batches."""

    jobs: int
    kids: tuple[Tree, ...] = ()


def trees(level: int = 1, levels: int = 3) -> st.SearchStrategy[Tree]:
    """A root with 0-4 jobs (0 often: empty batches) and 0-3 children, `levels` deep."""
    jobs = st.sampled_from([0, 0, 1, 1, 2, 3, 4])
    if level >= levels:
        return st.builds(Tree, jobs)
    return st.builds(Tree, jobs, st.lists(trees(level + 1, levels), max_size=3).map(tuple))


@attrs.define
class ModelBatch:
    """What the model knows of one batch."""

    bid: str
    parent: str | None
    jobs: dict[str, str] = attrs.field(factory=dict)
    """jid -> its last ending: "queued" (never ran), "retrying", "dead" or "ok". The
    member jobs, and the callback jobs of its children that fired."""
    errors: dict[str, str] = attrs.field(factory=dict)
    """jid -> the message of its last failure (jobs that are not "ok")."""
    dead: set[str] = attrs.field(factory=set)
    """Jobs that died and have not succeeded since (a retry after a death keeps them)."""
    kids: list[str] = attrs.field(factory=list)
    died: bool = False
    """A job of this batch died at some point."""
    fired: list[tuple[str, float]] = attrs.field(factory=list)
    """The callbacks that fired, in order, with their time."""

    def has(self, event: str) -> bool:
        return any(name == event for name, _at in self.fired)


def callback_jid(bid: str, name: str) -> str:
    return f"{bid}.{name}"


def callback_job(bid: str, name: str, parent: str | None = None,
                 at: float | None = None) -> Payload:
    """The callback job of batch `bid` for callback `name` as in its spec; as pushed when it
    fired at `at`, a member of `parent` (the batch's parent, None for a root)."""
    return Payload(name=f"on_{name}", jid=callback_jid(bid, name), queue=CALLBACKS,
                   args=[bid], created_at=0.0, callback_of=bid, callback_event=name,
                   batch_id=parent, enqueued_at=at)


class Model:
    """Batches and their callbacks, computed without core.batch."""

    def __init__(self) -> None:
        self.batches: dict[str, ModelBatch] = {}

    def depth(self, bid: str) -> int:
        parent = self.batches[bid].parent
        return 0 if parent is None else 1 + self.depth(parent)

    def died_within(self, bid: str) -> bool:
        batch = self.batches[bid]
        return batch.died or any(self.died_within(kid) for kid in batch.kids)

    def settle(self, now: float) -> list[tuple[str, str]]:
        """Fire what is due, leaves first (a child's callbacks are its parent's input, and
        its callback jobs its parent's members); return what fired: (batch, callback)."""
        fired: list[tuple[str, str]] = []
        for bid in sorted(self.batches, key=self.depth, reverse=True):
            batch = self.batches[bid]
            kids = [self.batches[kid] for kid in batch.kids]
            due = {
                "death": self.died_within(bid),
                "complete": all(s != "queued" for s in batch.jobs.values())
                and all(kid.has("complete") for kid in kids),
                "success": all(s == "ok" for s in batch.jobs.values())
                and all(kid.has("success") for kid in kids),
            }
            for name in EVENTS:
                if due[name] and not batch.has(name):
                    batch.fired.append((name, now))
                    fired.append((bid, name))
                    if batch.parent is not None:
                        self.batches[batch.parent].jobs[callback_jid(bid, name)] = "queued"
        return fired

    def open(self, bid: str) -> bool:
        return not self.batches[bid].has("complete")


class BatchMachine(RuleBasedStateMachine):
    """A memory backend and a fakeredis one, driven with the same batch operations."""

    def __init__(self) -> None:
        super().__init__()
        self._contexts: list[Iterator[Any]] = []
        context = fake_redis_backend()
        self._contexts.append(context)
        self.backends: list[Backend] = [MemoryBackend(), next(context)]
        self.model = Model()
        self.now = 1000.0
        self.count = 0
        self.jobs: list[Payload] = []
        """The jobs that can end, in creation order: the members, as pushed, and the
        callback jobs that fired, as the model says they were pushed (a root's with no
        batch_id)."""
        self.checks = 0
        self.touched: set[str] = set()
        """Batches the last step could change (a job's batch and its ancestors, the batches
        of a push and their parents)."""

    def teardown(self) -> None:
        for context in self._contexts:
            for _ in context:
                pass

    def tick(self) -> float:
        self.now += 1.0
        return self.now

    def _name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    # -- building pushes -------------------------------------------------------------------

    def _spec(self, bid: str, parent: str | None) -> BatchSpec:
        callbacks = {event: (CALLBACKS, encode(callback_job(bid, event))) for event in EVENTS}
        return BatchSpec(bid, f"tree {bid}", parent, callbacks, {"success": {"bid": bid}})

    def _members(self, bid: str, n: int) -> tuple[Payload, ...]:
        return tuple(Payload(name="member", jid=self._name("j"), queue=QUEUE, created_at=0.0,
                             batch_id=bid) for _ in range(n))

    def _flatten(self, tree: Tree, parent: str | None,
                 into: list[BatchPush]) -> None:
        """Pre-order: a parent before its children (push_batches asks for that)."""
        bid = self._name("b")
        into.append(BatchPush(bid, self._spec(bid, parent), self._members(bid, tree.jobs)))
        for kid in tree.kids:
            self._flatten(kid, bid, into)

    def _apply(self, pushes: list[BatchPush], touched: list[str]) -> None:
        """Push on both backends; refused (BatchFinished) by both if any touched existing
        batch is complete, with nothing changed, else counted in the model."""
        refused = any(not self.model.open(bid) for bid in touched)
        now = self.tick()
        before = [self._snapshot(b, pushes) for b in self.backends] if refused else []
        outcomes = []
        for backend in self.backends:
            try:
                backend.push_batches(pushes, now)
                outcomes.append("ok")
            except BatchFinished:
                outcomes.append("finished")
        assert outcomes == ["finished" if refused else "ok"] * len(self.backends), outcomes
        if refused:
            assert [self._snapshot(b, pushes) for b in self.backends] == before
            event("a push refused (a batch it adds to is complete)")
            return
        for bid in touched:
            self._touch(bid)
        for push in pushes:
            if push.new is not None:
                self.model.batches[push.bid] = ModelBatch(push.bid, push.new.parent)
                if push.new.parent is not None:
                    self.model.batches[push.new.parent].kids.append(push.bid)
            for job in push.jobs:
                self.model.batches[push.bid].jobs[job.jid] = "queued"
                self.jobs.append(job)
            self._touch(push.bid)
        self._settle(now)

    def _settle(self, now: float) -> None:
        """The model fires what is due; the callback jobs that fired become jobs to end."""
        for bid, name in self.model.settle(now):
            self.jobs.append(callback_job(bid, name, self.model.batches[bid].parent, now))

    def _touch(self, bid: str) -> None:
        """`bid` and its ancestors may change."""
        self.touched |= self._lineage(bid)

    def _snapshot(self, backend: Backend, pushes: list[BatchPush]) -> Any:
        """What a refused push must leave alone: the queues and sets, its batches (the
        existing ones and their ancestors; the new ones stay unknown)."""
        bids = {push.bid for push in pushes} | set(self.touched)
        for push in pushes:
            known = push.bid if push.new is None else push.new.parent
            if known in self.model.batches:
                bids |= self._lineage(known)
        return (backend.queue_sizes(), backend.entries("scheduled"),
                {bid: backend.get_batch(bid, self.now) for bid in sorted(bids)})

    def _lineage(self, bid: str) -> set[str]:
        found = set()
        while True:
            found.add(bid)
            parent = self.model.batches[bid].parent
            if parent is None:
                return found
            bid = parent

    # -- rules -----------------------------------------------------------------------------

    @initialize(tree=trees())
    def first_tree(self, tree: Tree) -> None:
        """Start with a tree."""
        self._push_tree(tree)

    @rule(data=st.data(), what=st.sampled_from(["tree", "child", "child", "jobs", "jobs"]))
    def grow(self, data: st.DataObject, what: str) -> None:
        """A push: a new root batch with its whole tree; a child tree (and, in the same
        call, jobs for another batch) added to an existing batch; or jobs added to one.
        Additions are refused when a batch they add to is complete. New batches stop at
        MAX_BATCHES (then only jobs are added)."""
        bids = sorted(self.model.batches)
        if what == "jobs" or len(bids) >= MAX_BATCHES:
            bid = data.draw(st.sampled_from(bids), label="batch")
            n = data.draw(st.integers(1, 3), label="jobs")
            self._apply([BatchPush(bid, None, self._members(bid, n))], [bid])
        elif what == "tree":
            self._push_tree(data.draw(trees(), label="tree"))
        else:
            parent = data.draw(st.sampled_from(bids), label="parent")
            pushes: list[BatchPush] = []
            touched = [parent]
            if data.draw(st.booleans(), label="with jobs for another"):
                other = data.draw(st.sampled_from(bids), label="other")
                pushes.append(BatchPush(other, None, self._members(other, 1)))
                touched.append(other)
            self._flatten(data.draw(trees(levels=2), label="tree"), parent, pushes)
            self._apply(pushes, touched)

    def _push_tree(self, tree: Tree) -> None:
        pushes: list[BatchPush] = []
        self._flatten(tree, None, pushes)
        self._apply(pushes, [])

    @rule(index=st.integers(0, 10_000),
          which=st.sampled_from(["pending", "pending callback", "pending callback", "any"]),
          how=st.sampled_from(["succeed", "succeed", "fail", "die", "die_acked"]))
    def end(self, index: int, which: str, how: str) -> None:
        """One run of a job ends (a member, or a callback job that fired): mostly of a
        member that has not succeeded (a dead one is retried by hand), often of a child's
        callback job that has not (so that parents get to fire), sometimes of any (one
        that succeeded may run again, a root's callback job counts nowhere)."""
        jobs = self.jobs
        if which != "any":
            pending = [job for job in jobs if job.batch_id is not None
                       and self.model.batches[job.batch_id].jobs[job.jid] != "ok"]
            callbacks = [job for job in pending if job.callback_of is not None]
            jobs = (callbacks if which == "pending callback" else []) or pending or jobs
        if jobs:
            self._end(jobs[index % len(jobs)], how)

    def _end(self, job: Payload, how: str) -> None:
        now = self.tick()
        jid, bid = job.jid, job.batch_id
        error = f"{jid} broke at {now}"
        broken = attrs.evolve(job, error_class="Boom", error_message=error, retry_count=1)
        settlement = {
            "succeed": Settlement(Action.ACK, job),
            "fail": Settlement(Action.RETRY, broken, retry_at=now + 5, failed=1),
            "die": Settlement(Action.BURY, broken, reason="exhausted", failed=1),
            "die_acked": Settlement(Action.ACK, broken, failed=1),
        }[how]
        for backend in self.backends:  # the delivery is not held: settle acks nothing
            backend.settle(WORKER, Delivery(encode(job), job.queue), settlement, now)
        if job.callback_of is not None:
            event(f"a callback job of a {'root' if bid is None else 'child'}: {how}")
        if bid is None:  # a root's callback job: a member of nothing, it changes nothing
            assert job.callback_of is not None
            self._touch(job.callback_of)
            self._settle(now)
            return
        self._touch(bid)
        batch = self.model.batches[bid]
        if batch.jobs[jid] != "ok":  # an ending of a job that succeeded counts nowhere
            if how == "succeed":
                batch.jobs[jid] = "ok"
                batch.errors.pop(jid, None)
                batch.dead.discard(jid)
            else:
                batch.jobs[jid] = "retrying" if how == "fail" else "dead"
                batch.errors[jid] = error
                if how != "fail":
                    batch.died = True
                    batch.dead.add(jid)
        self._settle(now)

    # -- what must hold after every step ---------------------------------------------------

    @invariant()
    def backends_and_model_agree(self) -> None:
        """(a) and (c): the callback jobs, batch by batch, are the model's (fired once, at
        the time the model says); (b) both backends store the same batches, as the model
        counts them."""
        queues = [[decode(raw) for raw in backend.peek(CALLBACKS, 10_000)]
                  for backend in self.backends]
        assert queues[0] == queues[1], "the callback queues differ"
        queued = queues[0]
        assert len({job.jid for job in queued}) == len(queued), "a callback fired twice"
        assert len(queued) == sum(len(b.fired) for b in self.model.batches.values())
        for bid, batch in self.model.batches.items():
            mine = [job for job in queued if job.callback_of == bid]
            assert [(job.callback_event, job.enqueued_at) for job in mine] == batch.fired, (
                f"callbacks of {bid}")
            assert mine == [callback_job(bid, name, batch.parent, at)
                            for name, at in batch.fired], f"callback jobs of {bid}"
        self.checks += 1
        if self.checks % FULL_CHECK_EVERY == 0:  # every batch, through recent_batches
            views = [{v.state.bid: v for v in backend.recent_batches(0, 1000, self.now)}
                     for backend in self.backends]
            assert views[0] == views[1], "the stored batches differ"
            assert list(views[0]) == list(views[1]), "recent_batches' order differs"
            assert views[0].keys() == self.model.batches.keys()
            self._check_views(views[0])
        for bid in self.touched:  # every step: the batches it could change, by get_batch
            got = [backend.get_batch(bid, self.now) for backend in self.backends]
            assert got[0] == got[1], f"get_batch({bid}) differs"
            assert got[0] is not None
            self._check_views({bid: got[0]})
        self.touched = set()
        for batch in self.model.batches.values():
            fired = dict(batch.fired)
            if "success" in fired and fired["success"] > fired["complete"]:
                event("success after complete")
            if "death" in fired and batch.kids and not batch.died:
                event("death from a child")
            if "success" in fired and batch.kids and any("." not in j for j in batch.jobs):
                event("success of a parent with jobs")
            if "success" in fired and "death" in fired:
                event("success after a death")
            waited = [s for jid, s in batch.jobs.items() if "." in jid]  # "b3.complete", not "j7"
            if "complete" in fired and waited:
                event("complete of a parent that waited for a child's callback jobs")
            if "success" in fired and waited:
                event("success of a parent that waited for a child's callback jobs")
            if any(s in {"retrying", "dead"} for s in waited):
                event("a child's callback job failed in its parent")

    def _check_views(self, views: dict[str, BatchView]) -> None:
        """Stored batches against the model's counters and fire times."""
        for bid, view in views.items():
            batch = self.model.batches[bid]
            state = view.state
            fired = dict(batch.fired)
            assert (state.death_at, state.complete_at, state.success_at) == (
                fired.get("death"), fired.get("complete"), fired.get("success")), bid
            assert (state.parent, state.children) == (batch.parent, batch.kids)
            assert state.total == len(batch.jobs)
            assert state.pending == {j for j, s in batch.jobs.items() if s != "ok"}
            assert state.dead == batch.dead
            assert state.failures == {j: ("Boom", e) for j, e in batch.errors.items()}
            assert (state.kids_incomplete, state.kids_unsucceeded) == (
                sum(not self.model.batches[k].has("complete") for k in batch.kids),
                sum(not self.model.batches[k].has("success") for k in batch.kids))


TestBatches = BatchMachine.TestCase
# at most 120 examples (the ci profile's 200 took about 35 s; the suite should stay near
# 10 minutes)
TestBatches.settings = settings(stateful_step_count=25,
                                max_examples=min(120, settings().max_examples))
