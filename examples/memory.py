"""Per-run memory: typed steps hand values to each other by field name.

A workflow of typed jobs (attrs Input/Output schemas): each step's Input is hydrated
from the run's memory, its Output written back. Shows explicit arguments winning over
memory, last-write-wins inside a Group versus per-step namespaces, extend_ttl() from
inside a step, and a schema error that sends a step straight to the dead set.
Exits 0 when everything behaved as described. Run it with `python examples/memory.py`.
"""

from __future__ import annotations

import sys

import attrs

from sideline import App, Chain, Group, RunStatus, SchemaError, Workflow, current_job

# keep_memory=True keeps a finished run's memory (until its TTL) so we can print it.
app = App(keep_memory=True)


@attrs.define
class Order:
    order_id: int
    currency: str = "EUR"


@attrs.define
class Priced:
    amount: float
    currency: str


@attrs.define
class Quote:
    amount: float


@attrs.define
class Invoice:
    amount: float
    currency: str
    best: float


@app.job(name="price", input=Order, output=Priced)
def price(order: Order) -> Priced:
    """Price an order (a long step: keep the run alive while it works)."""
    current_job().extend_ttl(3600)
    return Priced(amount=order.order_id * 10.0, currency=order.currency)


@app.job(name="quote", input=Priced, output=Quote)
def quote(priced: Priced) -> Quote:
    """A carrier quote; two run in parallel, each under its own namespace."""
    return Quote(amount=priced.amount * 1.2)


@app.job(name="invoice", input=Invoice)
def invoice(data: Invoice) -> dict[str, str]:
    """Write the invoice; a plain dict return is written to memory too."""
    return {"invoice": f"{data.amount:.2f} {data.currency} (best quote {data.best:.2f})"}


def main() -> int:
    """Run the workflow and a broken one on an embedded worker; return the exit code."""
    try:
        price.enqueue(order_id="7")  # checked before anything is pushed
    except SchemaError as exc:
        print("refused:", exc)

    workflow = Workflow(
        Chain(
            price.s(currency="USD"),  # explicit: beats the "GBP" seeded in memory
            Group(quote.s().set(namespace="fast"), quote.s().set(namespace="cheap")),
            invoice.s().set(reads={"best": "cheap.amount"}),  # field <- namespaced key
        ),
        memory={"order_id": 3, "currency": "GBP"},  # seeded before the first step runs
    )
    broken = Workflow(quote.s(), app=app)  # nothing in memory for Priced's fields
    with app.worker(concurrency=2):
        run_id = workflow.run()
        info = app.wait(run_id, timeout_s=10)
        failed = app.wait(broken.run(), timeout_s=10)
    memory = app.memory(run_id)
    print(f"run {run_id}: {info.status}")
    for key, value in sorted(memory.items()):
        print(f"  {key} = {value!r}")
    [dead] = app.admin.dead().entries
    print(f"broken run: {failed.status}; dead step {dead.payload.name}: {dead.payload.dead_reason}")
    ok = (info.status is RunStatus.SUCCEEDED and memory["currency"] == "USD"
          and memory["invoice"] == "30.00 USD (best quote 36.00)"
          and {"fast.amount", "cheap.amount"} <= set(memory)
          and failed.status is RunStatus.FAILED and dead.payload.retry_count == 0)
    print("memory OK" if ok else "memory FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
