"""The app of the template end-to-end test: "enrich and index" (fetch -> enrich -> index).

Typed jobs hand their outputs to each other through the run's memory; `index` records
what it received with RPUSH onto `indexed_key(backend)` (JSON), inside the test's
namespace, so the test process can see what the worker process did.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from sideline import App, Chain
from sideline.adapters.redis import RedisBackend
from tests.redis.apps import lazy_app

__all__ = ["EnrichAndIndex", "build_app", "indexed_key"]


@attrs.define
class EnrichAndIndex:
    """The template's params: run it by doc_id only."""

    doc_id: int
    lang: str = "en"
    index: str = "docs"


@attrs.define
class FetchIn:
    doc_id: int


@attrs.define
class Document:
    text: str
    words: int


@attrs.define
class IndexIn:
    text: str
    words: int
    index: str
    lang: str


def indexed_key(backend: RedisBackend) -> str:
    """The list `index` appends what it received to."""
    return backend.keys("test", "indexed")


def build_app(namespace: str) -> App:
    """An App on Redis (SIDELINE_REDIS_URL) with the template and its typed jobs."""
    backend = RedisBackend.from_url(namespace=namespace)
    app = App(backend)

    @app.job(name="fetch", input=FetchIn, output=Document)
    def fetch(params: FetchIn) -> dict[str, Any]:
        if params.doc_id == 0:
            return {"text": None, "words": 0}  # a broken fetch: fails the Output schema
        return {"text": f"document {params.doc_id} about redis", "words": 4}

    @app.job(name="enrich", input=Document, output=Document)
    def enrich(doc: Document) -> Document:
        return Document(text=doc.text.title(), words=doc.words + 1)

    @app.job(name="index", input=IndexIn)
    def index(data: IndexIn) -> dict[str, bool]:
        backend.client.rpush(indexed_key(backend), json.dumps(attrs.asdict(data)))
        return {"indexed": True}

    @app.template("enrich_and_index", input=EnrichAndIndex)
    def enrich_and_index(params: EnrichAndIndex) -> Chain:
        """Fetch a document, enrich it, index it."""
        return Chain(fetch.s(), enrich.s(), index.s())

    return app


__getattr__ = lazy_app(build_app, globals())
