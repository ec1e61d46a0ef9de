"""A batch: upload 10 images, then make the album visible exactly once.

The batch "Upload images" holds 10 `upload(image_id)` jobs; its success callback
`mark_visible(bid, album)` runs once, after every upload succeeded, even though two
uploads fail their first attempt and are retried. The complete callback `report(bid)`
fires earlier, once every upload ran once (two of them had failed at that point).
Runs on the embedded memory backend (collect mode and `app.drain()`): no Redis needed.
Exits 0 when mark_visible ran exactly once, after all 10 uploads. Run it with
`python examples/batch_images.py`.
"""

from __future__ import annotations

import logging
import sys

from sideline import App, current_job

logging.basicConfig(level=logging.CRITICAL)  # the first failures below are on purpose

app = App(testing="collect")
events: list[str] = []
attempts: dict[int, int] = {}


@app.job(name="images.upload", retry=3)
def upload(image_id: int) -> None:
    """Upload one image; images 3 and 7 fail their first attempt (a flaky network)."""
    attempts[image_id] = attempts.get(image_id, 0) + 1
    if image_id in (3, 7) and attempts[image_id] == 1:
        raise ConnectionError(f"upload of image {image_id} timed out")
    events.append(f"upload {image_id}")


@app.job(name="images.mark_visible")
def mark_visible(bid: str, album: int) -> None:
    """The success callback: called as job(bid, *args); its options are the batch's."""
    batch = current_job().batch
    assert batch is not None
    events.append(f"mark_visible album={album} options={batch.options}")


@app.job(name="images.report")
def report(bid: str) -> None:
    """The complete callback: every job ran at least once, successful or not."""
    batch = current_job().batch
    assert batch is not None
    events.append(f"report: complete with {batch.status().failures} failed upload(s)")


def main() -> int:
    """Push the batch, run everything, check the callback; 0 when it behaved."""
    batch = app.batch("Upload images")
    batch.on("success", mark_visible.s(7), {"album": 7})
    batch.on("complete", report.s())
    with batch.jobs():  # the 10 jobs are pushed together when the block ends
        for image_id in range(10):
            upload.enqueue(image_id)
    print(f"batch {batch.bid}: {batch.status().total} jobs pushed")

    app.drain()  # runs the jobs, the two retries and the callback
    for event in events:
        print(" ", event)
    status = batch.status()
    print(f"pending={status.pending} failures={status.failures} complete={status.complete} "
          f"success={status.success}")

    uploads = [e for e in events if e.startswith("upload")]
    ok = (len(uploads) == 10 and status.success and attempts[3] == attempts[7] == 2
          and events[8] == "report: complete with 2 failed upload(s)"  # 8 uploads done
          and sorted(events[9:11]) == ["upload 3", "upload 7"]  # the retries
          and events[11:] == ["mark_visible album=7 options={'album': 7}"])
    print("mark_visible ran once, after all 10 uploads" if ok else "BATCH FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
