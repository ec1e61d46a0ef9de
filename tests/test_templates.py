"""Workflow templates: register, run with params, list, defaults from TOML and YAML files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest

from sideline import (
    App,
    Chain,
    ConfigurationError,
    RunStatus,
    SchemaError,
    WorkflowError,
)


@attrs.define
class IndexParams:
    doc_id: int
    lang: str = "en"
    index: str = "docs"


@attrs.define
class Text:
    text: str


@attrs.define
class FetchIn:
    doc_id: int


@attrs.define
class IndexIn:
    text: str
    index: str
    lang: str


def template_app() -> tuple[App, list[Any]]:
    app = App(testing="collect", keep_memory=True)
    indexed: list[Any] = []

    @app.job(name="fetch", input=FetchIn, output=Text)
    def fetch(params: FetchIn) -> Text:
        return Text(text=f"document {params.doc_id}")

    @app.job(name="enrich", input=Text, output=Text)
    def enrich(data: Text) -> Text:
        return Text(text=data.text.upper())

    @app.job(name="index", input=IndexIn)
    def index(data: IndexIn) -> dict[str, Any]:
        indexed.append(data)
        return {"indexed": True}

    @app.template("enrich_and_index", input=IndexParams)
    def enrich_and_index(params: IndexParams) -> Chain:
        """Fetch a document, enrich it, index it."""
        return Chain(fetch.s(), enrich.s(), index.s())

    return app, indexed


def test_run_by_doc_id_only_with_defaults_applied_and_seeded() -> None:
    app, indexed = template_app()
    run_id = app.run_template("enrich_and_index", {"doc_id": 42})
    app.drain()
    assert app.status(run_id).status is RunStatus.SUCCEEDED
    assert indexed == [IndexIn(text="DOCUMENT 42", index="docs", lang="en")]
    assert app.memory(run_id) == {"doc_id": 42, "lang": "en", "index": "docs",
                                  "text": "DOCUMENT 42", "indexed": True}


def test_bad_params_raise_and_start_nothing() -> None:
    app, _ = template_app()
    with pytest.raises(SchemaError) as caught:
        app.run_template("enrich_and_index", {"doc_id": "42", "shard": 1})
    assert str(caught.value) == ("template 'enrich_and_index' params: field 'doc_id' expected "
                                 "int, got str '42'; unknown key 'shard'")
    with pytest.raises(SchemaError) as caught:
        app.run_template("enrich_and_index")
    assert str(caught.value) == ("template 'enrich_and_index' params: missing required field "
                                 "'doc_id' (int)")
    assert app.backend.queue_sizes() == {}


def test_unknown_template_and_duplicate_names() -> None:
    app, _ = template_app()
    with pytest.raises(WorkflowError, match=r"unknown template 'nope' \(registered: "
                                            r"enrich_and_index\)"):
        app.run_template("nope", {})
    with pytest.raises(ConfigurationError, match="already registered"):
        app.templates.register("enrich_and_index", input=IndexParams)(lambda p: Chain())
    with pytest.raises(ConfigurationError, match="must be an attrs class"):
        app.template("other", input=dict)


def test_list_templates() -> None:
    app, _ = template_app()
    [template] = app.list_templates()
    assert (template.name, template.input, template.description) == (
        "enrich_and_index", IndexParams, "Fetch a document, enrich it, index it.")
    assert template.params() == {"doc_id": "int", "lang": "str = 'en'", "index": "str = 'docs'"}


def test_toml_defaults_beat_schema_defaults_and_params_beat_both(tmp_path: Path) -> None:
    app, indexed = template_app()
    path = tmp_path / "templates.toml"
    path.write_text('[enrich_and_index]\nlang = "fr"\nindex = "archive"\n', "utf-8")
    app.templates.load_defaults(path)
    assert app.list_templates()[0].params()["lang"] == "str = 'fr'"
    app.run_template("enrich_and_index", {"doc_id": 1, "index": "live"})
    app.drain()
    assert indexed == [IndexIn(text="DOCUMENT 1", index="live", lang="fr")]


def test_yaml_defaults_loaded_before_the_template_is_registered(tmp_path: Path) -> None:
    app = App(testing="collect")
    path = tmp_path / "templates.yaml"
    path.write_text("later:\n  lang: de\n", "utf-8")
    app.templates.load_defaults(path)
    seen: list[IndexParams] = []

    @app.template("later", input=IndexParams)
    def later(params: IndexParams) -> Chain:
        seen.append(params)
        return Chain()

    run_id = app.run_template("later", {"doc_id": 3})
    assert app.status(run_id).status is RunStatus.SUCCEEDED  # an empty workflow
    assert seen == [IndexParams(doc_id=3, lang="de")]
    assert app.memory(run_id) == {}  # the run is over: its seeded memory cleared


def test_bad_defaults_files(tmp_path: Path) -> None:
    app, _ = template_app()
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[enrich_and_index]\nlang = 3\n', "utf-8")
    with pytest.raises(SchemaError) as caught:
        app.templates.load_defaults(wrong)
    assert str(caught.value) == ("template 'enrich_and_index' defaults: field 'lang' expected "
                                 "str, got int 3")
    flat = tmp_path / "flat.yaml"
    flat.write_text("lang: en\n", "utf-8")
    with pytest.raises(ConfigurationError, match="must map each template name to a table"):
        app.templates.load_defaults(flat)
    (tmp_path / "bad.toml").write_text("[x\n", "utf-8")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        app.templates.load_defaults(tmp_path / "bad.toml")
    with pytest.raises(ConfigurationError, match=r"use a \.toml, \.yaml or \.yml file"):
        app.templates.load_defaults(tmp_path / "defaults.json")
