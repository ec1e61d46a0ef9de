"""Periodic jobs: every worker runs the schedule, and each tick fires exactly once.

Run: python examples/periodic.py   (embedded in-memory backend, no Redis needed)

Two embedded workers run the same entries for a few seconds; each tick's job is pushed by
exactly one of them (the claim and the push are one atomic step). The admin API lists the
entries, pauses one and runs another now, outside its schedule.
"""

from __future__ import annotations

import time
from collections import Counter

from sideline import App, current_job

app = App()
runs: Counter[str] = Counter()


@app.job(name="heartbeat", every_s=1)
def heartbeat() -> None:
    runs[current_job().payload.jid] += 1


@app.job(name="reports.daily")
def daily_report(kind: str) -> None:
    runs[f"report {kind}"] += 1


# 06:00 every day in Warsaw, daylight-saving changes included (needs the cron extra)
app.periodic("daily-sales", daily_report.s("sales"), cron="0 6 * * *", tz="Europe/Warsaw")
# every 2 seconds; after an outage, only the latest missed tick fires (the default)
app.periodic("frequent-check", daily_report.s("check"), every_s=2, missed="latest")


def main() -> None:
    with app.worker(concurrency=2, instance_id="a"), app.worker(concurrency=2, instance_id="b"):
        time.sleep(3.5)
        for entry in app.admin.periodic():
            print(f"{entry.name:15} {entry.schedule:12} {entry.tz:14} next run at "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(entry.next_run or 0))}")
        app.admin.pause_periodic("frequent-check")
        app.admin.run_periodic("daily-sales")  # once, now
        time.sleep(1.0)
    ticks = [jid for jid in runs if jid.startswith("periodic:heartbeat:")]
    print(f"heartbeat ticks: {len(ticks)}, each run once: {all(runs[j] == 1 for j in ticks)}")
    print("reports run:", {k: v for k, v in runs.items() if k.startswith("report")})
    assert ticks
    assert all(runs[jid] == 1 for jid in ticks)
    assert runs["report sales"] == 1


if __name__ == "__main__":
    main()
