"""Random typed chains: the value step k produces is exactly the value step k+1 receives.

Each step k is a typed job whose Input has one field and whose Output has one field;
step k's Output field is named like step k+1's Input field, so the value travels
through the run's memory. Field names come from a tiny alphabet, so later steps
overwrite keys earlier ones wrote (last write wins must still deliver the newest).
Types vary per link: int, float, str, bool, list[int], dict[str, str], int | None.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.support import fake_redis_backend

from sideline import App, Chain, MemoryBackend, RunStatus, Workflow
from sideline.core.ports import Backend

_TYPES: dict[str, tuple[Any, st.SearchStrategy[Any]]] = {
    "int": (int, st.integers(-(2**53), 2**53)),
    "float": (float, st.floats(allow_nan=False, allow_infinity=False)),
    "str": (str, st.text(max_size=12)),
    "bool": (bool, st.booleans()),
    "list[int]": (list[int], st.lists(st.integers(-100, 100), max_size=4)),
    "dict[str, str]": (dict[str, str], st.dictionaries(st.text(max_size=4), st.text(max_size=4),
                                                       max_size=3)),
    "int | None": (int | None, st.one_of(st.none(), st.integers(-5, 5))),
}
_NAMES = st.sampled_from(["a", "b", "value"])


@attrs.frozen
class _Link:
    """What flows from one step to the next: a field name, its type and the value sent."""

    name: str
    kind: str
    value: Any


@st.composite
def _links(draw: st.DrawFn) -> list[_Link]:
    links = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(sorted(_TYPES)))
        links.append(_Link(draw(_NAMES), kind, draw(_TYPES[kind][1])))
    return links


def _schema(prefix: str, index: int, link: _Link) -> type[Any]:
    return attrs.make_class(f"{prefix}{index}", {link.name: attrs.field(type=_TYPES[link.kind][0])})


@contextmanager
def _backend(kind: str) -> Iterator[Backend]:
    if kind == "memory":
        yield MemoryBackend()
    else:
        yield from fake_redis_backend()  # a private FakeServer, closed after the example


@pytest.mark.parametrize("kind", ["memory", "fakeredis"])
@given(seed=st.integers(0, 2**31), links=_links())
def test_each_step_receives_what_the_previous_step_produced(kind: str, seed: int,
                                                            links: list[_Link]) -> None:
    with _backend(kind) as backend:
        _check_chain(App(backend, testing="collect", keep_memory=True), seed, links)


def _check_chain(app: App, seed: int, links: list[_Link]) -> None:
    received: dict[int, Any] = {}
    steps = []
    # Step 0 gets the seed as an explicit argument; step k (k >= 1) reads links[k-1].
    inputs: list[_Link] = [_Link("seed", "int", seed), *links]
    for k, link in enumerate(links):
        incoming = inputs[k]

        def perform(data: Any, k: int = k, incoming: _Link = incoming, out: _Link = link) -> Any:
            received[k] = getattr(data, incoming.name)
            return {out.name: out.value}

        job = app.job(name=f"step{k}", input=_schema("In", k, incoming),
                      output=_schema("Out", k, link))(perform)
        steps.append(job.s(seed=seed) if k == 0 else job.s())
    run_id = Workflow(Chain(*steps), app=app).run()
    app.drain(raise_errors=True)
    assert app.status(run_id).status is RunStatus.SUCCEEDED
    for k in range(1, len(links)):
        sent = links[k - 1].value
        got = received[k]
        assert got == sent, (k, sent, got)
        assert type(got) is type(sent), (k, sent, got)
    assert received[0] == seed
    last = links[-1]
    assert app.memory(run_id)[last.name] == last.value
