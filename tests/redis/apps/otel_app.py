"""The app of the cross-process tracing test: a worker whose spans are written, one JSON
line each, to the file named by OTEL_SPANS_PATH (namespace from SIDELINE_NAMESPACE)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from sideline import App
from sideline.adapters.redis import RedisBackend
from sideline.contrib.opentelemetry import instrument
from tests.redis.apps import lazy_app

__all__ = ["JsonLinesExporter", "build_app"]


class JsonLinesExporter(SpanExporter):
    """Appends trace_id, span_id, parent span id (hex; null for a root) and name per span."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.path.open("a") as out:
            for span in spans:
                context, parent = span.get_span_context(), span.parent
                out.write(json.dumps({
                    "trace_id": f"{context.trace_id:032x}" if context else None,
                    "span_id": f"{context.span_id:016x}" if context else None,
                    "parent": f"{parent.span_id:016x}" if parent else None,
                    "name": span.name,
                }) + "\n")
        return SpanExportResult.SUCCESS


def build_app(namespace: str, url: str | None = None) -> App:
    """An App on Redis with one job, `traced`, instrumented with a file-exporting provider."""
    app = App(RedisBackend.from_url(url, namespace=namespace))

    @app.job(name="traced", retry=0)
    def traced(value: int) -> int:
        return value * 2

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(
        JsonLinesExporter(Path(os.environ.get("OTEL_SPANS_PATH", "otel-spans.jsonl")))))
    instrument(app, tracer_provider=provider)
    return app


__getattr__ = lazy_app(build_app, globals())
