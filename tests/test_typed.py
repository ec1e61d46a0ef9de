"""Typed jobs: Input/Output schemas, exact error messages, run memory, extend_ttl."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from sideline import (
    App,
    Chain,
    ConfigurationError,
    Group,
    Job,
    JobContext,
    MemoryBackend,
    Payload,
    RunStatus,
    SchemaError,
    SidelineError,
    Workflow,
    WorkflowError,
    current_job,
)
from sideline.adapters.memory import InjectedFault
from tests.conftest import FakeClock


@attrs.define
class Author:
    name: str
    email: str | None = None


@attrs.define
class Doc:
    doc_id: int
    author: Author
    tags: list[str] = attrs.Factory(list)
    lang: str = "en"
    score: float = 0.0


@attrs.define
class Fetched:
    text: str
    words: int


@attrs.define
class EnrichIn:
    text: str
    lang: str = "en"


@attrs.define
class Enriched:
    summary: str


def typed_app(**options: Any) -> tuple[App, list[Any]]:
    """An app (collect mode) with typed jobs fetch -> enrich that record what they got."""
    app = App(testing="collect", **options)
    seen: list[Any] = []

    @app.job(name="fetch", input=Doc, output=Fetched)
    def fetch(doc: Doc) -> Fetched:
        seen.append(doc)
        return Fetched(text=f"text of {doc.doc_id} by {doc.author.name}", words=4)

    @app.job(name="enrich", input=EnrichIn, output=Enriched)
    def enrich(data: EnrichIn) -> dict[str, Any]:
        seen.append(data)
        return {"summary": f"{data.lang}:{data.text[:7]}"}

    return app, seen


def dead_reasons(app: App) -> list[str | None]:
    return [entry.payload.dead_reason for entry in app.backend.entries("dead")]


# -- schema errors, each with its exact message ---------------------------------------------


def test_wrong_type_names_job_field_and_expected_type() -> None:
    app, _ = typed_app()
    with pytest.raises(SchemaError) as caught:
        app.enqueue("fetch", kwargs={"doc_id": "abc", "author": {"name": "ann"}})
    assert str(caught.value) == "job 'fetch' input: field 'doc_id' expected int, got str 'abc'"
    assert app.backend.queue_sizes() == {}  # nothing pushed


def test_no_coercion_of_numbers_strings_or_bools() -> None:
    app, _ = typed_app()
    with pytest.raises(SchemaError) as caught:
        app.enqueue("fetch", [{"doc_id": True, "author": {"name": 5}, "score": "1.5"}])
    assert str(caught.value) == (
        "job 'fetch' input: field 'doc_id' expected int, got bool True; field 'author.name' "
        "expected str, got int 5; field 'score' expected float, got str '1.5'")


def test_missing_required_field() -> None:
    app, _ = typed_app()
    with pytest.raises(SchemaError) as caught:
        app.enqueue("fetch", kwargs={"author": {"name": "ann"}})
    assert str(caught.value) == "job 'fetch' input: missing required field 'doc_id' (int)"


def test_unknown_key() -> None:
    app, _ = typed_app()
    with pytest.raises(SchemaError) as caught:
        app.enqueue("fetch", kwargs={"doc_id": 1, "author": {"name": "ann"}, "colour": "red"})
    assert str(caught.value) == "job 'fetch' input: unknown key 'colour'"


def test_nested_schema_errors_carry_the_field_path() -> None:
    app, _ = typed_app()
    with pytest.raises(SchemaError) as caught:
        app.enqueue("fetch", kwargs={"doc_id": 1, "author": {"email": 3, "x": 1},
                                     "tags": ["a", 2]})
    assert str(caught.value) == (
        "job 'fetch' input: missing required field 'author.name' (str); field 'author.email' "
        "expected str | None, got int 3; unknown key 'author.x'; field 'tags[1]' expected str, "
        "got int 2")
    with pytest.raises(SchemaError) as caught:
        app.enqueue("fetch", kwargs={"doc_id": 1, "author": "ann", "tags": "a,b"})
    assert str(caught.value) == (
        "job 'fetch' input: field 'author' expected Author, got str 'ann'; field 'tags' "
        "expected list[str], got str 'a,b'")


def test_a_typed_job_takes_one_dict_or_keywords() -> None:
    app, _ = typed_app()
    with pytest.raises(SchemaError) as caught:
        app.enqueue("fetch", [1, 2])
    assert str(caught.value) == ("job 'fetch' input: a typed job takes one dict or keyword "
                                 "arguments, got 2 positional argument(s)")


def test_bad_output_is_reported_with_the_output_schema() -> None:
    app = App(testing="collect")

    @app.job(name="liar", output=Fetched)
    def liar() -> dict[str, Any]:
        return {"text": "x", "words": "many"}

    with pytest.raises(SchemaError) as caught:
        liar()
    assert str(caught.value) == "job 'liar' output: field 'words' expected int, got str 'many'"


def test_a_direct_call_structures_input_and_returns_the_output_instance() -> None:
    app, seen = typed_app()
    fetched = app.registry.get("fetch")
    result = app.perform(fetched, [], {"doc_id": 7, "author": {"name": "ann"}})
    assert result == Fetched(text="text of 7 by ann", words=4)
    assert seen == [Doc(7, Author("ann"))]


def test_schemas_must_be_attrs_classes() -> None:
    app = App()
    with pytest.raises(ConfigurationError, match="job 'x' input must be an attrs class"):
        app.job(name="x", input=dict)(lambda data: None)


# -- schema violations are not retried ------------------------------------------------------


def test_schema_violation_goes_straight_to_the_dead_set() -> None:
    app, _ = typed_app()
    # pushed past enqueue's validation, as an old client or another language might
    app.backend.push([Payload(name="fetch", jid="j1", queue="default",
                              kwargs={"doc_id": "1", "author": {"name": "a"}})])
    app.drain()
    assert dead_reasons(app) == ["job 'fetch' input: field 'doc_id' expected int, got str '1'"]
    assert app.backend.entries("retry") == []


def test_retry_schema_errors_opts_in_to_retries() -> None:
    app = App(testing="collect")

    @app.job(name="flaky", output=Enriched, retry=2, retry_schema_errors=True)
    def flaky() -> dict[str, Any]:
        return {}

    flaky.enqueue()
    app.drain()
    [dead] = [entry.payload for entry in app.backend.entries("dead")]
    assert dead.retry_count == 2
    assert dead.dead_reason == ("retries exhausted (2) after SchemaError: job 'flaky' output: "
                                "missing required field 'summary' (str)")


def test_a_step_missing_a_field_in_memory_kills_the_run_with_the_message() -> None:
    app, _ = typed_app()
    run_id = Workflow(Chain(app_job(app, "enrich").s()), app=app).run()
    app.drain()
    assert app.status(run_id).status is RunStatus.FAILED
    assert dead_reasons(app) == ["job 'enrich' input: missing required field 'text' (str)"]


def app_job(app: App, name: str) -> Job[Any, Any]:
    return Job(app, app.registry.get(name))


# -- hydration and output persistence --------------------------------------------------------


def test_output_is_persisted_and_hydrates_the_next_step() -> None:
    app, seen = typed_app(keep_memory=True)
    fetch, enrich = app_job(app, "fetch"), app_job(app, "enrich")
    run_id = Workflow(Chain(fetch.s(doc_id=7, author={"name": "ann"}), enrich.s())).run()
    app.drain()
    assert app.status(run_id).status is RunStatus.SUCCEEDED
    assert seen[1] == EnrichIn(text="text of 7 by ann", lang="en")
    assert app.memory(run_id) == {"text": "text of 7 by ann", "words": 4,
                                  "summary": "en:text of"}


def test_hydration_precedence_explicit_then_memory_then_default() -> None:
    app, seen = typed_app(keep_memory=True)
    enrich = app_job(app, "enrich")
    run_id = Workflow(Chain(enrich.s(), enrich.s(lang="fr"), enrich.s({"text": "given"})),
                      app=app, memory={"text": "from memory", "lang": "de"}).run()
    app.drain()
    assert seen == [EnrichIn("from memory", "de"),       # memory beats the default "en"
                    EnrichIn("from memory", "fr"),       # an explicit argument beats memory
                    EnrichIn("given", "de")]             # a positional dict likewise
    assert app.memory(run_id)["summary"] == "de:given"


def test_default_applies_when_neither_argument_nor_memory_has_the_field() -> None:
    app, seen = typed_app()
    enrich = app_job(app, "enrich")
    Workflow(enrich.s(), app=app, memory={"text": "t"}).run()
    app.drain()
    assert seen == [EnrichIn("t", "en")]


def test_memory_is_cleared_when_the_run_succeeds() -> None:
    app, _ = typed_app()
    enrich = app_job(app, "enrich")
    run_id = Workflow(enrich.s(), app=app, memory={"text": "t"}).run()
    app.drain()
    assert app.status(run_id).status is RunStatus.SUCCEEDED
    assert app.memory(run_id) == {}


def test_failed_run_keeps_its_memory_and_resumes_when_the_dead_step_is_retried() -> None:
    app, seen = typed_app()
    enrich = app_job(app, "enrich")
    run_id = Workflow(Chain(enrich.s(), enrich.s()), app=app).run()
    app.drain()
    assert app.status(run_id).status is RunStatus.FAILED
    app.backend.write(run_id, {"text": "fixed"}, 60, app.clock.now())  # repair the data
    [dead] = app.backend.entries("dead")
    assert app.retry_dead(dead.payload.jid)
    app.drain()
    assert app.status(run_id).status is RunStatus.SUCCEEDED
    assert [s.text for s in seen] == ["fixed", "fixed"]


def test_cancel_clears_memory_unless_kept() -> None:
    for keep in (False, True):
        app, _ = typed_app(keep_memory=keep)
        enrich = app_job(app, "enrich")
        run_id = Workflow(enrich.s(), app=app, memory={"text": "t"}).run()
        assert app.cancel(run_id)
        assert app.memory(run_id) == ({"text": "t"} if keep else {})


def test_group_members_write_the_same_key_last_write_wins() -> None:
    app = App(testing="collect", keep_memory=True)

    @app.job(name="score", input=EnrichIn, output=Enriched)
    def score(data: EnrichIn) -> Enriched:
        return Enriched(summary=data.text)

    run_id = Workflow(Group(score.s(text="a"), score.s(text="b")), app=app).run()
    app.drain()  # drain runs the group's members in push order: "b" writes last
    assert app.memory(run_id) == {"summary": "b"}


def test_namespaced_steps_keep_their_outputs_apart_and_are_read_by_mapping() -> None:
    app = App(testing="collect", keep_memory=True)
    merged: list[EnrichIn] = []

    @app.job(name="score", input=EnrichIn, output=Enriched)
    def score(data: EnrichIn) -> Enriched:
        return Enriched(summary=data.text.upper())

    @app.job(name="pick", input=EnrichIn, memory_namespace=True)
    def pick(data: EnrichIn) -> dict[str, str]:
        merged.append(data)
        return {"chosen": data.text}

    run_id = Workflow(Chain(
        Group(score.s(text="a").set(namespace="left"), score.s(text="b").set(namespace="right")),
        pick.s().set(reads={"text": "right.summary", "lang": "left.summary"})), app=app).run()
    app.drain()
    assert merged == [EnrichIn(text="B", lang="A")]
    assert app.memory(run_id) == {"left.summary": "A", "right.summary": "B", "pick.chosen": "B"}


def test_step_arguments_are_checked_when_the_signature_is_built() -> None:
    app, _ = typed_app()
    enrich = app_job(app, "enrich")
    with pytest.raises(SchemaError) as caught:
        enrich.s(text=3, mood="x")
    assert str(caught.value) == ("job 'enrich' input: field 'text' expected str, got int 3; "
                                 "unknown key 'mood'")
    with pytest.raises(SchemaError) as caught:
        Workflow(enrich.s().set(reads={"txt": "a"}), app=app).run()
    assert str(caught.value) == "job 'enrich' reads: unknown Input field 'txt'"
    assert app.backend.run_ids() == []  # type: ignore[attr-defined]


# -- extend_ttl and current_job -------------------------------------------------------------


def test_extend_ttl_from_inside_a_step_pushes_back_the_run_expiry() -> None:
    clock = FakeClock()
    app = App(testing="collect", clock=clock, run_ttl_s=100)
    answers: list[bool] = []

    @app.job(name="long")
    def long() -> None:
        clock.advance(90)
        answers.append(current_job().extend_ttl(1000))
        clock.advance(500)  # far past the run's own 100 s TTL

    run_id = Workflow(Chain(long.s(), long.s()), app=app).run()
    app.drain()
    assert answers == [True, True]
    assert app.status(run_id).status is RunStatus.SUCCEEDED


def test_extend_ttl_outside_a_workflow_or_a_job_is_an_error() -> None:
    app = App(testing="collect")
    errors: list[Exception] = []

    @app.job(name="plain")
    def plain() -> None:
        try:
            current_job().extend_ttl(10)
        except WorkflowError as exc:
            errors.append(exc)

    plain.enqueue()
    app.drain()
    assert len(errors) == 1
    assert "extend_ttl() needs a workflow step" in str(errors[0])
    with pytest.raises(SidelineError, match="only available inside a job"):
        current_job()


def test_current_job_is_the_job_context_middleware_sees() -> None:
    app = App(testing="collect")
    seen: list[JobContext] = []

    def middleware(context: JobContext, call_next: Any) -> Any:
        seen.append(context)
        return call_next()

    app.server_middleware.append(middleware)

    @app.job(name="who")
    def who() -> None:
        seen.append(current_job())

    who.enqueue()
    app.drain()
    assert seen[0] is seen[1]
    assert seen[0].payload.name == "who"


def test_a_crash_between_memory_write_and_completion_reruns_the_step_idempotently() -> None:
    backend = MemoryBackend()
    app = App(backend, testing="collect", keep_memory=True)
    calls: list[str] = []

    @app.job(name="score", input=EnrichIn, output=Enriched)
    def score(data: EnrichIn) -> Enriched:
        calls.append(data.text)
        return Enriched(summary=data.text.upper())

    run_id = Workflow(Chain(score.s(text="a"), score.s()), app=app,
                      memory={"text": "b"}).run()
    backend.faults.inject("settle", "before")  # the worker dies right after the write
    with pytest.raises(InjectedFault):
        app.drain()
    assert app.memory(run_id)["summary"] == "A"  # written, but the step is not completed
    assert backend.recover("drain") == 1  # drain()'s worker id: the job goes back
    app.drain()
    assert calls == ["a", "a", "b"]  # the first step ran again and wrote the same value
    assert app.status(run_id).status is RunStatus.SUCCEEDED
    assert app.memory(run_id) == {"text": "b", "summary": "B"}
