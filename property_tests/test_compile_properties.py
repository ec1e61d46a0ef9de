"""Pure properties of compile(): structure, barrier counts, ordering and delays.

Ordering and delays are checked against `reference`, an independent reading of the
tree semantics, not against compile's own logic.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from property_tests.reference import expected_delays, leaves, must_precede, reachable_pairs
from property_tests.strategies import (
    CALLBACK_JOB,
    FakeClock,
    dag_skeletons,
    dag_workflows,
    label_of,
    leaf,
    recording_app,
    workflow_trees,
)
from sideline.core.jobs import Signature
from sideline.core.run import RunStatus
from sideline.core.workflow import Chain, Dag, Graph, Group, Step, WithDelay, compile
from sideline.runtime.workflows import Workflow

trees = workflow_trees()
any_workflow = st.one_of(trees, dag_workflows(), dag_skeletons())
# compile() is pure and takes microseconds: afford five times the profile's example count.
more = settings(max_examples=5 * settings().max_examples)


def _labels(graph: Graph) -> dict[int, str]:
    return {node.id: label_of(node) for node in graph.nodes}


@more
@given(any_workflow)
def test_one_node_per_leaf_carrying_its_signature(tree: Step) -> None:
    graph = compile(tree)
    assert [node.id for node in graph.nodes] == list(range(len(graph.nodes)))
    assert Counter(_labels(graph).values()) == Counter(leaves(tree))
    for node in graph.nodes:
        assert node.job == leaf("x").job
        assert node.args == (label_of(node), 0)


@more
@given(any_workflow)
def test_barrier_count_is_the_number_of_distinct_predecessors(tree: Step) -> None:
    graph = compile(tree)
    incoming: Counter[int] = Counter()
    for node in graph.nodes:
        assert len(set(node.successors)) == len(node.successors), f"duplicate edges from {node}"
        assert node.id not in node.successors
        incoming.update(node.successors)
    for node in graph.nodes:
        assert node.predecessors == incoming[node.id], node
    assert [n.id for n in graph.entry_nodes()] == [n.id for n in graph.nodes if not incoming[n.id]]


@more
@given(any_workflow)
def test_graph_is_acyclic(tree: Step) -> None:
    graph = compile(tree)
    waiting = {node.id: node.predecessors for node in graph.nodes}
    ready = [node_id for node_id, count in waiting.items() if count == 0]
    ordered = []
    while ready:
        node_id = ready.pop()
        ordered.append(node_id)
        for succ in graph.nodes[node_id].successors:
            waiting[succ] -= 1
            if waiting[succ] == 0:
                ready.append(succ)
    assert sorted(ordered) == list(range(len(graph.nodes))), "a cycle kept some nodes waiting"


@more
@given(any_workflow)
def test_ordering_constraints_match_the_tree(tree: Step) -> None:
    graph = compile(tree)
    labels = _labels(graph)
    compiled = {(labels[u], labels[v]) for u, v in reachable_pairs(graph)}
    expected = must_precede(tree)
    assert compiled - expected == set(), "compiled graph orders leaves the tree leaves independent"
    assert expected - compiled == set(), "compiled graph lets leaves run before what they wait for"


def _check_delays(tree: Step) -> None:
    graph = compile(tree)
    assert {label_of(node): node.delay_ms for node in graph.nodes} == dict(expected_delays(tree))


@more
@given(any_workflow)
def test_delays_are_the_enclosing_delays_of_entry_nodes(tree: Step) -> None:
    _check_delays(tree)


# Dag skeletons are where delay and ordering bugs hide (steps waiting only on jobless
# steps); they compile in microseconds, so ten times the profile's examples.
@settings(max_examples=10 * settings().max_examples)
@given(dag_skeletons())
def test_dag_skeletons_order_and_delay_like_the_reference(tree: Step) -> None:
    graph = compile(tree)
    labels = _labels(graph)
    assert {(labels[u], labels[v]) for u, v in reachable_pairs(graph)} == must_precede(tree)
    _check_delays(tree)


def test_dag_step_after_jobless_steps_that_wait_on_a_job_is_not_delayed() -> None:
    # Found by test_dag_skeletons_order_and_delay_like_the_reference (since fixed).
    # Chain(a, Group(), c) in a WithDelay gives c no delay; this Dag is the same for c.
    dag = Dag()
    nothing = dag.add(Group())
    a = dag.add(leaf("a"))
    after_a = dag.add(Group(), after=[a])
    dag.add(leaf("c"), after=[after_a, nothing])
    graph = compile(WithDelay(dag, 5))
    assert [(label_of(n), n.delay_ms) for n in graph.nodes] == [("a", 5), ("c", 0)]


def test_delays_with_dags_examples() -> None:
    dag = Dag()
    a = dag.add(leaf("a"))
    dag.add(Chain(leaf("b"), leaf("c")), after=[a])
    dag.add(leaf("d"))
    graph = compile(Chain(WithDelay(dag, 7), WithDelay(Group(leaf("e"), Chain()), 3)))
    assert {label_of(n): n.delay_ms for n in graph.nodes} == {"a": 7, "b": 0, "c": 0, "d": 7, "e": 3}


def test_dag_step_after_empty_steps_keeps_delay() -> None:
    # Found by the delay property (since fixed): Chain(Group(), a) inside a WithDelay
    # keeps a's delay, and so must the Dag equivalent.
    dag = Dag()
    empty = dag.add(Group())
    dag.add(leaf("b"), after=[empty])
    assert compile(WithDelay(Chain(Group(), leaf("a")), 5)).nodes[0].delay_ms == 5
    assert compile(WithDelay(dag, 5)).nodes[0].delay_ms == 5


def test_delay_reset_after_first_chain_step() -> None:
    graph = compile(WithDelay(Chain(Group(), WithDelay(leaf("a"), 2), leaf("b")), 5))
    assert [n.delay_ms for n in graph.nodes] == [7, 0]


@given(workflow_trees(max_leaves=0))
def test_trees_without_jobs_compile_to_nothing_and_succeed_at_once(tree: Step) -> None:
    assert compile(tree).nodes == ()
    app, recorder = recording_app(clock=FakeClock())
    run_id = Workflow(tree, app=app, on_success=Signature(CALLBACK_JOB, ("success",))).run()
    info = app.status(run_id)
    assert info.status is RunStatus.SUCCEEDED
    assert info.finished
    assert info.nodes == ()
    app.drain()
    assert recorder.callbacks == {"success": 1}
