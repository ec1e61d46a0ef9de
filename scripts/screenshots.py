#!/usr/bin/env python
"""Take the dashboard screenshots of docs/dashboard.md (docs/images/<route>.png).

    python scripts/screenshots.py [pytest options]

The screenshots are taken by the browser test that renders every page against real Redis
and a real `sideline worker` (tests/web/test_browser_redis.py): with SIDELINE_SCREENSHOTS
set, it saves each page, full length at 1280 px wide, in Debian's Chromium. It needs
Redis (SIDELINE_REDIS_URL, default redis://127.0.0.1:6379/0) and Chromium.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/web/test_browser_redis.py::test_every_page_renders_with_live_data"


def main() -> int:
    env = {**os.environ, "SIDELINE_SCREENSHOTS": str(ROOT / "docs" / "images"), "CI": "true"}
    # CI=true: a missing Redis or Chromium fails instead of skipping (no silent no-op)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST,
               *sys.argv[1:]]
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
