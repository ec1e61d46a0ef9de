"""compile(): trees and DAGs to graphs with barrier counts and delays (plain data)."""

from __future__ import annotations

import pytest

from sideline.core.errors import WorkflowError
from sideline.core.jobs import Signature
from sideline.core.workflow import Chain, Dag, Group, WithDelay, compile


def sig(label: str) -> Signature:
    return Signature("job", (label,))


def shape(tree: object) -> dict[str, tuple[list[str], int, int]]:
    """label -> (successor labels, barrier count, delay_ms)."""
    graph = compile(tree)  # type: ignore[arg-type]
    label = {n.id: n.args[0] for n in graph.nodes}
    return {label[n.id]: ([label[s] for s in n.successors], n.predecessors, n.delay_ms)
            for n in graph.nodes}


def test_chain_group_chain_has_fan_out_and_fan_in() -> None:
    assert shape(Chain(sig("T1"), Group(sig("T2"), sig("T3")), sig("T4"))) == {
        "T1": (["T2", "T3"], 0, 0),
        "T2": (["T4"], 1, 0),
        "T3": (["T4"], 1, 0),
        "T4": ([], 2, 0),
    }


def test_chain_inside_group_joins_on_its_last_step() -> None:
    tree = Chain(Group(Chain(sig("A"), sig("B")), sig("C")), sig("D"))
    assert shape(tree) == {
        "A": (["B"], 0, 0), "B": (["D"], 1, 0), "C": (["D"], 0, 0), "D": ([], 2, 0)}


def test_empty_chain_and_group_vanish_into_edges() -> None:
    tree = Chain(sig("A"), Chain(), Group(), Group(Chain()), sig("B"))
    assert shape(tree) == {"A": (["B"], 0, 0), "B": ([], 1, 0)}


def test_empty_workflow_has_no_nodes() -> None:
    assert compile(Chain(Group(), Chain())).nodes == ()


def test_group_with_an_empty_member_still_waits_for_the_rest() -> None:
    tree = Chain(sig("A"), Group(Chain(), sig("B")), sig("C"))
    # C waits for B, and (through the empty member) for A: two distinct predecessors.
    assert shape(tree)["C"] == ([], 2, 0)


def test_delay_applies_to_entry_jobs_only_and_nested_delays_add() -> None:
    tree = WithDelay(Chain(WithDelay(Group(sig("A"), sig("B")), 100), sig("C")), 250)
    assert shape(tree) == {"A": (["C"], 0, 350), "B": (["C"], 0, 350), "C": ([], 2, 0)}


def test_delay_passes_through_a_leading_empty_step() -> None:
    assert shape(WithDelay(Chain(Group(), sig("A"), sig("B")), 40)) == {
        "A": (["B"], 0, 40), "B": ([], 1, 0)}


def test_dag_step_with_two_predecessors() -> None:
    dag = Dag()
    a = dag.add(sig("A"))
    b = dag.add(sig("B"))
    c = dag.add(sig("C"), after=[a, b])
    dag.add(sig("D"), after=[a, c, a])
    assert shape(dag) == {
        "A": (["C", "D"], 0, 0), "B": (["C"], 0, 0), "C": (["D"], 2, 0), "D": ([], 2, 0)}


def test_dag_inside_a_chain_joins_on_its_sinks() -> None:
    dag = Dag()
    a = dag.add(sig("A"))
    dag.add(sig("B"), after=[a])
    dag.add(sig("C"))
    assert shape(Chain(sig("S"), dag, sig("E"))) == {
        "S": (["A", "C"], 0, 0), "A": (["B"], 1, 0), "B": (["E"], 1, 0),
        "C": (["E"], 1, 0), "E": ([], 2, 0)}


def test_dag_handle_from_another_dag_is_refused() -> None:
    other = Dag().add(sig("X"))
    with pytest.raises(WorkflowError, match="handles returned by this Dag"):
        Dag().add(sig("A"), after=[other])


def test_negative_or_float_delay_is_refused() -> None:
    with pytest.raises(WorkflowError, match=r"int >= 0 \(milliseconds\)"):
        WithDelay(sig("A"), -1)
    with pytest.raises(WorkflowError, match="milliseconds"):
        WithDelay(sig("A"), 1.5)  # type: ignore[arg-type]


def test_non_step_is_refused_with_its_repr() -> None:
    with pytest.raises(WorkflowError, match="got 'oops'"):
        Chain(sig("A"), "oops")  # type: ignore[arg-type]
