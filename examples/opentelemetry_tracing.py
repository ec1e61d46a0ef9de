"""OpenTelemetry tracing on the memory backend: a job and a 3-step workflow run, each one trace.

- `instrument(app, tracer_provider=provider)` adds the enqueue span (client middleware),
  the perform span (server middleware) and the settle span (observer).
- The job is enqueued inside a "checkout" span: its enqueue, perform and settle spans
  are all in that trace. The workflow run is started inside a "nightly" span: all three
  steps' perform spans are in that one.

Spans go to an in-memory exporter and are printed (name and trace id). Needs the
`opentelemetry` extra and opentelemetry-sdk. Exits 0 when the traces are as expected.
Run it with `python examples/opentelemetry_tracing.py`.
"""

from __future__ import annotations

import sys

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sideline import App, Chain, Workflow
from sideline.contrib.opentelemetry import instrument

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
tracer = provider.get_tracer("example")

app = App()
instrument(app, tracer_provider=provider)


@app.job(name="shop.charge")
def charge(order_id: int) -> str:
    return f"charged {order_id}"


@app.job(name="report.step")
def step(name: str) -> str:
    return name


def main() -> int:
    with tracer.start_as_current_span("checkout") as checkout:
        charge.enqueue(1042)
    with tracer.start_as_current_span("nightly") as nightly:
        Workflow(Chain(step.s("extract"), step.s("transform"), step.s("load"))).run()
    app.drain()
    spans = exporter.get_finished_spans()
    for span in spans:
        print(f"{span.context.trace_id:032x}  {span.name}")
    checkout_id, nightly_id = (s.get_span_context().trace_id for s in (checkout, nightly))
    checks = {
        "the job's spans are in the checkout trace": {
            s.context.trace_id for s in spans if s.name.endswith("shop.charge")} == {checkout_id},
        "every workflow step ran in the nightly trace": [
            s.context.trace_id for s in spans if s.name == "sideline perform report.step"
        ] == [nightly_id] * 3,
    }
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
