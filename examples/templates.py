"""Workflow templates: the "enrich and index" case, run by doc_id only.

A template is a named builder (params -> workflow tree) with an attrs Input schema for
its params. `app.run_template(name, params)` structures the params (defaults applied,
bad ones refused with a SchemaError), seeds them into the new run's memory and returns
the run id; the typed steps then find `doc_id`, `lang` and `index` there by name.
Exits 0 when the run indexed the enriched document. Run it with
`python examples/templates.py`.
"""

from __future__ import annotations

import sys

import attrs

from sideline import App, Chain, RunStatus, SchemaError

app = App()
indexed: list[dict[str, object]] = []


@attrs.define
class EnrichAndIndex:
    """The template's params."""

    doc_id: int
    lang: str = "en"
    index: str = "docs"


@attrs.define
class DocRef:
    doc_id: int


@attrs.define
class Document:
    title: str
    body: str


@attrs.define
class Enriched:
    keywords: list[str]


@attrs.define
class ToIndex:
    title: str
    keywords: list[str]
    lang: str
    index: str


@app.job(name="docs.fetch", input=DocRef, output=Document)
def fetch(ref: DocRef) -> Document:
    """Load the document (here: make one up)."""
    return Document(title=f"Document {ref.doc_id}", body="queues workflows redis queues")


@app.job(name="docs.enrich", input=Document, output=Enriched)
def enrich(doc: Document) -> Enriched:
    """Extract keywords."""
    return Enriched(keywords=sorted(set(doc.body.split())))


@app.job(name="docs.index", input=ToIndex)
def index(doc: ToIndex) -> None:
    """Put the enriched document in the search index."""
    indexed.append(attrs.asdict(doc))


@app.template("enrich_and_index", input=EnrichAndIndex)
def enrich_and_index(params: EnrichAndIndex) -> Chain:
    """Fetch a document, enrich it, index it."""
    return Chain(fetch.s(), enrich.s(), index.s())


def main() -> int:
    """List the templates, refuse bad params, run the template; return the exit code."""
    for template in app.list_templates():
        print(f"template {template.name}: {template.description} params={template.params()}")
    try:
        app.run_template("enrich_and_index", {"doc_id": "42", "colour": "red"})
    except SchemaError as exc:
        print("refused:", exc)
    with app.worker(concurrency=2):
        run_id = app.run_template("enrich_and_index", {"doc_id": 42})
        info = app.wait(run_id, timeout_s=10)
    print(f"run {run_id}: {info.status}; indexed {indexed}")
    ok = info.status is RunStatus.SUCCEEDED and indexed == [{
        "title": "Document 42", "keywords": ["queues", "redis", "workflows"], "lang": "en",
        "index": "docs"}] and app.memory(run_id) == {}  # cleared once the run succeeded
    print("templates OK" if ok else "templates FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
