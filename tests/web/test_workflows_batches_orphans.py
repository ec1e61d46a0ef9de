"""The Workflows, Batches and Orphaned-jobs pages (Starlette's test client; a run page's
live refresh in real Chromium) and the run graph's layout (sideline.web.graph)."""

from __future__ import annotations

import itertools
import random
import re
import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from sideline import App, Chain, Dag, Group, NodeStatus, RunStatus, Signature, Workflow
from sideline.core.workflow import compile
from sideline.runtime.middleware import current_job
from sideline.web import create_app
from sideline.web.graph import Layout, layers, layout
from sideline.web.pages.orphans import orphan_key
from tests.conftest import FakeClock
from tests.web.conftest import Serve, csrf_of

NODE = re.compile(r'<g class="node status-(\w+)" data-node="(\d+)"')


def _nodes(html: str) -> dict[int, str]:
    """node id -> status class of each node element of a run page's SVG."""
    found = NODE.findall(html)
    statuses = {int(node): status for status, node in found}
    assert len(statuses) == len(found), "a node is drawn twice"
    return statuses


def _failing_run(app: App) -> str:
    """Chain(Group(hello, fail), hello), drained: hello succeeded, fail dead, the last
    step skipped (its predecessor died); the run failed."""
    run_id = Workflow(Chain(Group(Signature("hello", (1,)), Signature("fail", (2,))),
                            Signature("hello", (3,))), app=app).run()
    app.drain()
    return run_id


# -- the layout ----------------------------------------------------------------------------


def _successors(tree: Any) -> dict[int, tuple[int, ...]]:
    return {node.id: node.successors for node in compile(tree).nodes}


def _check(drawn: Layout, successors: dict[int, tuple[int, ...]]) -> None:
    """No two boxes overlap, every box is inside the drawing, every edge points right."""
    assert [box.id for box in drawn.boxes] == sorted(successors)
    for one, other in itertools.combinations(drawn.boxes, 2):
        apart = (one.x + drawn.box_width <= other.x or other.x + drawn.box_width <= one.x
                 or one.y + drawn.box_height <= other.y or other.y + drawn.box_height <= one.y)
        assert apart, (one, other)
    for box in drawn.boxes:
        assert min(box.x, box.y) >= 0
        assert box.x + drawn.box_width <= drawn.width
        assert box.y + drawn.box_height <= drawn.height
    assert len(drawn.arrows) == sum(len(after) for after in successors.values())
    for arrow in drawn.arrows:
        assert drawn.box(arrow.source).x < drawn.box(arrow.target).x
        assert arrow.path.startswith("M")


def test_layers_are_longest_paths_from_the_roots() -> None:
    hello = Signature("hello")
    assert layers(_successors(Chain(Group(hello, hello), hello))) == {0: 0, 1: 0, 2: 1}
    dag = Dag()
    a = dag.add(hello)
    b = dag.add(hello, after=[a])
    c = dag.add(hello, after=[b])
    dag.add(hello, after=[a, c])  # a short edge and a long path: the long path wins
    dag.add(hello)  # a second root
    assert layers(_successors(dag)) == {0: 0, 1: 1, 2: 2, 3: 3, 4: 0}
    drawn = layout(_successors(dag))
    _check(drawn, _successors(dag))
    assert {box.id: box.layer for box in drawn.boxes} == {0: 0, 1: 1, 2: 2, 3: 3, 4: 0}


def test_the_layout_of_nested_trees_and_big_runs_never_overlaps() -> None:
    hello = Signature("hello")
    trees = [
        Chain(hello, Group(hello, Chain(hello, hello), Group(hello, hello)), hello),
        Group(*[hello] * 200),  # one tall layer
        Chain(*[hello] * 200),  # one long row
        Chain(Group(*[Chain(hello, hello, hello)] * 40), Group(*[hello] * 30), hello),
    ]
    for tree in trees:
        _check(layout(_successors(tree)), _successors(tree))
    rng = random.Random(7)  # a random DAG of 200 nodes: edges only to later ids
    dag = {node: tuple(sorted(rng.sample(range(node + 1, 200), min(3, 199 - node))))
           if rng.random() < 0.6 else () for node in range(200)}
    drawn = layout(dag)
    _check(drawn, dag)
    for node, after in dag.items():
        for target in after:
            assert drawn.box(node).layer < drawn.box(target).layer


def test_the_layout_refuses_cycles_and_unknown_successors() -> None:
    with pytest.raises(ValueError, match="cycle"):
        layers({0: (1,), 1: (0,)})
    with pytest.raises(ValueError, match="not a node"):
        layers({0: (5,)})
    empty = layout({})
    assert (empty.boxes, empty.arrows) == ((), ())
    assert empty.width > 0


def test_a_layer_is_ordered_by_its_predecessors() -> None:
    # 0 -> 3 and 1 -> 2: node 2 follows 1 (lower), so it goes below node 3
    drawn = layout({0: (3,), 1: (2,), 2: (), 3: ()})
    assert drawn.box(3).row == 0
    assert drawn.box(2).row == 1


# -- workflows -----------------------------------------------------------------------------


def test_the_workflows_page_lists_runs_newest_first_with_a_status_filter(
        client: TestClient, web_app: App) -> None:
    failed = _failing_run(web_app)
    running = Workflow(Chain(Signature("hello", (1,)), Signature("hello", (2,))),
                       app=web_app).run()
    page = client.get("/workflows")
    assert page.status_code == 200
    assert page.text.index(running) < page.text.index(failed)
    assert 'class="status-running">running<' in page.text
    only_failed = client.get("/workflows?status=failed").text
    assert failed in only_failed
    assert running not in only_failed
    assert running in client.get("/workflows?status=running").text
    assert client.get("/workflows?status=nonsense").status_code == 400
    assert "No more runs" in client.get("/workflows?page=2").text


def test_a_run_page_draws_one_node_per_node_in_its_state(client: TestClient,
                                                          web_app: App) -> None:
    run_id = _failing_run(web_app)
    page = client.get(f"/workflows/{run_id}")
    assert page.status_code == 200
    assert _nodes(page.text) == {0: "succeeded", 1: "dead", 2: "skipped"}
    assert page.text.count('<path class="edge"') == 2
    assert 'marker-end="url(#sideline-arrow)"' in page.text
    assert 'class="graph-scroll"' in page.text
    assert "ValueError" in page.text  # the dead node's error, in its title and the table
    assert "failed with (2,)" in page.text
    assert 'data-run-status="failed"' in page.text
    # a failed run is finished: it refreshes seldom
    assert 'data-refresh-s="60.0"' in page.text
    live = Workflow(Signature("hello"), app=web_app).run()
    assert 'data-refresh-s="5.0"' in client.get(f"/workflows/{live}").text
    assert _nodes(client.get(f"/workflows/{live}").text) == {0: "queued"}


def test_cancel_a_run(client: TestClient, web_app: App) -> None:
    run_id = Workflow(Chain(Signature("hello", (1,)), Signature("hello", (2,))),
                      app=web_app).run()
    assert "Cancel run" in client.get(f"/workflows/{run_id}").text
    url = f"/workflows/{run_id}/cancel"
    assert client.post(url).status_code == 403
    assert client.post(url, data={"csrf": "forged"}).status_code == 403
    assert web_app.status(run_id).status is RunStatus.RUNNING
    done = client.post(url, data={"csrf": csrf_of(client)}, follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"].endswith(f"/workflows/{run_id}?note=cancelled")
    assert web_app.status(run_id).status is RunStatus.CANCELLED
    page = client.get(done.headers["location"]).text
    assert "was cancelled" in page
    assert "compacted" in page  # a cancelled run keeps its summary only
    assert "<svg" not in page
    assert "Cancel run" not in page
    again = client.post(url, data={"csrf": csrf_of(client)})
    assert "had already ended" in again.text


def test_retry_a_dead_node(client: TestClient, web_app: App) -> None:
    run_id = _failing_run(web_app)
    url = f"/workflows/{run_id}/retry"
    assert client.post(url, data={"node": "1"}).status_code == 403
    assert web_app.status(run_id).nodes[1].status is NodeStatus.DEAD
    done = client.post(url, data={"node": "1", "csrf": csrf_of(client)})
    assert done.status_code == 200
    assert "queued again" in done.text
    info = web_app.status(run_id)
    assert info.status is RunStatus.RUNNING
    assert info.nodes[1].status is NodeStatus.QUEUED
    assert _nodes(done.text)[1] == "queued"
    # not dead any more: nothing to retry
    assert "nothing was retried" in client.post(url, data={"node": "1",
                                                           "csrf": csrf_of(client)}).text
    assert client.post(url, data={"node": "9", "csrf": csrf_of(client)}).status_code == 404
    assert client.post(url, data={"node": "x", "csrf": csrf_of(client)}).status_code == 400


def test_a_compacted_run_shows_its_summary(client: TestClient, web_app: App) -> None:
    run_id = Workflow(Chain(Signature("hello", (1,)), Signature("hello", (2,))),
                      app=web_app).run()
    web_app.drain()
    page = client.get(f"/workflows/{run_id}").text
    assert "compacted" in page
    assert "<svg" not in page
    assert '<span class="status-succeeded">2 succeeded</span>' in page


def test_an_unknown_run_is_a_404_page(client: TestClient) -> None:
    page = client.get("/workflows/no-such-run")
    assert page.status_code == 404
    assert "unknown or has expired" in page.text
    assert "<code>no-such-run</code>" in page.text
    assert client.post("/workflows/no-such-run/retry",
                       data={"node": "0", "csrf": csrf_of(client)}).status_code == 404


# -- batches -------------------------------------------------------------------------------


def test_the_batch_pages_show_every_field_and_invalidate(client: TestClient,
                                                         web_app: App) -> None:
    outer = web_app.batch("images <b>")
    outer.on("success", Signature("hello", ("done",)), options={"album": 7})
    outer.on("death", Signature("hello", ("dead",)))
    with outer.jobs():
        web_app.enqueue("hello", [1])
        web_app.enqueue("fail", [2])
        inner = web_app.batch("thumbnails")
        with inner.jobs():
            web_app.enqueue("hello", [3])
    web_app.drain()
    status = web_app.admin.batch(outer.bid)
    assert status is not None
    [dead] = status.dead

    listing = client.get("/batches").text
    assert outer.bid in listing
    assert inner.bid in listing
    assert "images &lt;b&gt;" in listing
    assert "<b>" not in listing

    page = client.get(f"/batches/{outer.bid}")
    assert page.status_code == 200
    for field, value in (("total", status.total), ("pending", status.pending),
                         ("failures", status.failures), ("dead", 1), ("complete", "yes"),
                         ("success", "no"), ("invalidated", "no")):
        assert f'data-field="{field}">{value}<' in page.text, field
    assert f"/batches/{inner.bid}" in page.text  # the child
    assert dead in page.text
    assert "failed with (2,)" in page.text
    assert 'data-event="success"' in page.text
    assert 'data-event="death"' in page.text
    assert "{&#34;album&#34;: 7}" in page.text
    child = client.get(f"/batches/{inner.bid}").text
    assert f"/batches/{outer.bid}" in child  # the parent

    url = f"/batches/{outer.bid}/invalidate"
    assert client.post(url).status_code == 403
    assert client.post(url, data={"csrf": "forged"}).status_code == 403
    done = client.post(url, data={"csrf": csrf_of(client)})
    assert done.status_code == 200
    assert 'data-field="invalidated">yes<' in done.text
    assert web_app.admin.batch(outer.bid).invalidated  # type: ignore[union-attr]
    assert ">Invalidate</button>" not in done.text

    missing = client.get("/batches/no-such-batch")
    assert missing.status_code == 404
    assert "unknown or has expired" in missing.text
    gone = client.post("/batches/no-such-batch/invalidate", data={"csrf": csrf_of(client)})
    assert "nothing was invalidated" in gone.text


def test_a_batch_opened_by_a_workflow_step_links_to_its_run(client: TestClient,
                                                            web_app: App) -> None:
    @web_app.job(name="fan_out")
    def fan_out() -> None:
        with web_app.batch("fan-out").jobs():
            web_app.enqueue("hello", [1])
        assert current_job() is not None

    run_id = Workflow(Chain(Signature("fan_out"), Signature("hello", (2,))),
                      app=web_app).run()
    web_app.drain()
    [held] = [b for b in web_app.admin.batches() if b.run_id == run_id]
    page = client.get(f"/batches/{held.bid}").text
    assert f"/workflows/{run_id}#node-0" in page


# -- orphans -------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
def orphan_app(clock: FakeClock) -> App:
    app = App(clock=clock)

    @app.job(name="hello")
    def hello(*args: Any) -> None:
        """Does nothing."""

    return app


def _orphan(app: App, clock: FakeClock, count: int = 1) -> None:
    """A worker of instance "box-1" fetches `count` jobs, then its heartbeat expires."""
    for n in range(count):
        app.enqueue("hello", [n, "<script>x</script>"])
    app.backend.heartbeat("w-gone", {"instance": "box-1", "host": "h1"}, 5.0, clock.now())
    app.backend.heartbeat("w-live", {"instance": "box-2", "host": "h2"}, 60.0, clock.now())
    for _ in range(count):
        assert app.backend.fetch("w-gone", ["default"], 0) is not None
    clock.advance(10)


def test_the_orphans_page_lists_jobs_instances_and_refreshes_slowly(
        orphan_app: App, clock: FakeClock) -> None:
    _orphan(orphan_app, clock)
    [orphan] = orphan_app.admin.orphans()
    with TestClient(create_app(orphan_app, orphan_refresh_s=12.5)) as client:
        page = client.get("/orphans")
    assert page.status_code == 200
    assert 'data-refresh-s="12.5"' in page.text
    assert f'data-orphan="{orphan_key(orphan)}"' in page.text
    assert str(orphan.jid) in page.text
    assert "box-1" in page.text
    assert "<script>" not in page.text.split("<main", 1)[1]
    assert "&lt;script&gt;" in page.text
    assert '<tr class="dead" data-worker="w-gone">' in page.text
    assert '<tr class="alive" data-worker="w-live">' in page.text
    assert "Nothing was recovered yet" in page.text


def test_retry_and_delete_orphans_through_the_page(orphan_app: App, clock: FakeClock) -> None:
    _orphan(orphan_app, clock, count=4)
    admin = orphan_app.admin
    keys = [orphan_key(orphan) for orphan in admin.orphans()]
    with TestClient(create_app(orphan_app)) as client:
        client.get("/orphans")
        csrf = csrf_of(client)
        assert client.post("/orphans/act", data={"action": "retry", "key": keys}).status_code == 403
        forged = client.post("/orphans/act", data={"action": "retry", "csrf": "x"})
        assert forged.status_code == 403
        assert client.post("/orphans/act", data={"action": "boom", "csrf": csrf}).status_code == 400

        one = client.post("/orphans/act", data={"action": f"retry:{keys[0]}", "csrf": csrf})
        assert "1 job moved back to their queues" in one.text
        assert len(admin.orphans()) == 3
        assert admin.queues()[0].size == 1
        assert "Nothing was recovered yet" not in one.text  # the recovery log has it

        many = client.post("/orphans/act", data={"action": "delete", "key": keys[1:3],
                                                 "csrf": csrf})
        assert "2 jobs deleted" in many.text
        assert [orphan_key(o) for o in admin.orphans()] == keys[3:]
        assert admin.queues()[0].size == 1

        none = client.post("/orphans/act", data={"action": "retry", "csrf": csrf})
        assert "0 jobs moved" in none.text

        every = client.post("/orphans/act", data={"action": "retry", "all": "1", "csrf": csrf})
        assert "1 job moved" in every.text
        assert admin.orphans() == []
        assert admin.queues()[0].size == 2
        assert "No job is held by a dead worker" in every.text


def test_read_only_hides_every_action_and_refuses_posts(orphan_app: App,
                                                        clock: FakeClock) -> None:
    @orphan_app.job(name="fail", retry=False)
    def fail() -> None:
        raise ValueError("no")

    run_id = Workflow(Chain(Signature("fail"), Signature("hello")), app=orphan_app).run()
    batch = orphan_app.batch("b")
    with batch.jobs():
        orphan_app.enqueue("hello", [1])
    orphan_app.drain()
    _orphan(orphan_app, clock)
    with TestClient(create_app(orphan_app, read_only=True)) as client:
        for url in (f"/workflows/{run_id}", f"/batches/{batch.bid}", "/orphans"):
            page = client.get(url)
            assert page.status_code == 200
            assert 'method="post"' not in page.text, url
            assert 'type="checkbox" name="key"' not in page.text
        assert _nodes(client.get(f"/workflows/{run_id}").text)[0] == "dead"
        csrf = csrf_of(client)
        for url, data in ((f"/workflows/{run_id}/cancel", {}),
                          (f"/workflows/{run_id}/retry", {"node": "0"}),
                          (f"/batches/{batch.bid}/invalidate", {}),
                          ("/orphans/act", {"action": "retry", "all": "1"})):
            assert client.post(url, data={**data, "csrf": csrf}).status_code == 403, url
    assert len(orphan_app.admin.orphans()) == 1
    assert orphan_app.status(run_id).status is RunStatus.FAILED


def test_job_data_is_escaped_everywhere(client: TestClient, web_app: App) -> None:
    evil = "<script>alert(1)</script>"
    run_id = Workflow(Chain(Signature("fail", (evil,)), Signature("hello", (evil * 20,))),
                      app=web_app).run()
    batch = web_app.batch(evil)
    batch.on("success", Signature("hello"), options={"x": evil})
    with batch.jobs():
        web_app.enqueue("fail", [evil])
    web_app.drain()
    for url in (f"/workflows/{run_id}", "/workflows", "/batches", f"/batches/{batch.bid}"):
        page = client.get(url)
        assert page.status_code == 200
        assert "<script>alert" not in page.text, url
    run_page = client.get(f"/workflows/{run_id}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in run_page
    assert "<details>" in run_page  # the long arguments are cut, shown whole on demand


# -- in Chromium ---------------------------------------------------------------------------


def test_a_run_page_follows_its_run_in_chromium(serve: Serve, page: Any, web_app: App) -> None:
    run_id = Workflow(Chain(Signature("hello", (1,)), Signature("fail", (2,))),
                      app=web_app).run()
    base = serve(web_app, refresh_s=0.3)
    page.goto(f"{base}/workflows/{run_id}")
    first = page.locator('g.node[data-node="0"]')
    assert "status-queued" in (first.get_attribute("class") or "")
    width = page.evaluate(  # in one step: the refresher may swap the element meanwhile
        "document.querySelector('g.node[data-node=\"0\"] rect').getBoundingClientRect().width")
    assert width > 100  # the SVG is drawn at its size, not squeezed
    web_app.drain()  # the first step succeeds, the second dies
    page.wait_for_function(
        "document.querySelector('g.node[data-node=\"0\"]').classList.contains('status-succeeded')"
        " && document.querySelector('g.node[data-node=\"1\"]').classList.contains('status-dead')",
        timeout=5_000)
    assert page.locator("[data-run-status]").inner_text() == "failed"
    assert page.locator('tr[data-node="1"] button').inner_text() == "Retry"
