"""Multi-step workflows from batches: Sidekiq's order fulfilment, then dynamic fan-out.

1. Sidekiq Pro's recipe. The batch "Order 42" holds the whole fulfilment; its success
   callback `ship` runs exactly once, last. Step 1, a child batch, charges the card; its
   success callback (a member of "Order 42", as a child's callbacks are) re-opens
   "Order 42" and adds step 2 as a new child: one `pick` job per item. Each `pick` adds
   a child batch to its own batch ("Pack <item>": pack and label). "Order 42" succeeds
   only once every step and every callback has run.
2. Dynamic fan-out. In `Workflow(Chain(find_orders, fulfil_all, notify))`, `fulfil_all`
   opens a batch over the order ids `find_orders` found (unknown when the workflow was
   built); `notify` waits until every job of that batch succeeded.

Runs on the embedded memory backend (collect mode and `app.drain()`): no Redis needed.
Prints the order of events and exits 0 when it is the expected one. Run it with
`python examples/batch_workflow.py`.
"""

from __future__ import annotations

import sys

import attrs

from sideline import App, Chain, RunStatus, Workflow, current_job

app = App(testing="collect")
events: list[str] = []

# -- 1. Order fulfilment: each step's callback adds the next step to the overall batch --


@app.job(name="orders.charge")
def charge(order_id: int) -> None:
    """Step 1: charge the card."""
    events.append(f"charge {order_id}")


@app.job(name="orders.start_picking")
def start_picking(bid: str, order_id: int, items: list[str]) -> None:
    """Step 1's success callback: add step 2 to the overall batch (step 1's parent)."""
    events.append(f"step 1 done: pick {len(items)} items")
    step1 = current_job().batch
    assert step1 is not None
    assert step1.bid == bid
    parent = step1.status().parent
    assert parent is not None
    with app.open_batch(parent).jobs():  # accepted: this callback is one of its jobs
        step2 = app.batch(f"Order {order_id}: pick and pack")
        with step2.jobs():
            for item in items:
                pick.enqueue(item)


@app.job(name="orders.pick")
def pick(item: str) -> None:
    """Pick one item, then add a child batch to this job's batch: pack and label it."""
    events.append(f"pick {item}")
    batch = current_job().batch
    assert batch is not None
    with batch.jobs():  # re-open our own batch: what we add here, it waits for
        packing = app.batch(f"Pack {item}")
        with packing.jobs():
            pack.enqueue(item)
            label.enqueue(item)


@app.job(name="orders.pack")
def pack(item: str) -> None:
    """Pack one item."""
    events.append(f"pack {item}")


@app.job(name="orders.label")
def label(item: str) -> None:
    """Print its label."""
    events.append(f"label {item}")


@app.job(name="orders.ship")
def ship(bid: str, order_id: int) -> None:
    """The overall batch's success callback: every step and callback has run."""
    events.append(f"ship {order_id}")


def fulfil_order(order_id: int, items: list[str]) -> str:
    """Start the fulfilment of one order; return the bid of the overall batch."""
    overall = app.batch(f"Order {order_id}").on("success", ship.s(order_id))
    with overall.jobs():
        step1 = app.batch(f"Order {order_id}: charge")
        step1.on("success", start_picking.s(order_id, items))
        with step1.jobs():
            charge.enqueue(order_id)
    return overall.bid


# -- 2. Dynamic fan-out: a workflow step maps over what an earlier step found ----------


@attrs.define
class Found:
    order_ids: list[int]


@app.job(name="orders.find", output=Found)
def find_orders() -> Found:
    """Find today's orders: how many there are is known only now."""
    events.append("find orders")
    return Found(order_ids=[7, 8, 9])


@app.job(name="orders.fulfil_all", input=Found)
def fulfil_all(found: Found) -> None:
    """Open a batch over the orders found: the workflow waits for it to succeed."""
    batch = app.batch(f"Fulfil {len(found.order_ids)} orders")
    with batch.jobs():
        for order_id in found.order_ids:
            fulfil.enqueue(order_id)


@app.job(name="orders.fulfil")
def fulfil(order_id: int) -> None:
    """Fulfil one order (a member job of the step's batch)."""
    events.append(f"fulfil {order_id}")


@app.job(name="orders.notify")
def notify() -> None:
    """Runs only after every fulfil job succeeded."""
    events.append("notify")


def main() -> int:
    """Run both forms; 0 when the events came in the expected order."""
    fulfil_order(42, ["book", "lamp"])
    app.drain()
    print("order fulfilment:")
    for event in events:
        print("  ", event)
    fulfilment = list(events)
    ok = (fulfilment[:2] == ["charge 42", "step 1 done: pick 2 items"]
          and fulfilment.count("ship 42") == 1 and fulfilment[-1] == "ship 42"
          and all(fulfilment.index(f"pick {item}") < fulfilment.index(f"{step} {item}")
                  for item in ("book", "lamp") for step in ("pack", "label"))
          and len(fulfilment) == 9)

    events.clear()
    run_id = Workflow(Chain(find_orders.s(), fulfil_all.s(), notify.s()), app=app).run()
    app.drain()
    info = app.status(run_id)
    print(f"dynamic fan-out, run {info.status}:")
    for event in events:
        print("  ", event)
    ok = ok and info.status is RunStatus.SUCCEEDED and events[0] == "find orders" \
        and sorted(events[1:4]) == ["fulfil 7", "fulfil 8", "fulfil 9"] \
        and events[4:] == ["notify"]
    print("every step in order, ship and notify exactly once" if ok else "ORDER WRONG")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
