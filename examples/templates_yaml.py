"""Template params defaults from a YAML (or TOML) file.

Reuses the "enrich and index" template of examples/templates.py and loads its defaults
from examples/templates.yaml (YAML needs PyYAML: `pip install 'sideline[yaml]'`) and,
identically, from examples/templates.toml. A run by doc_id only then uses the file's
lang and index; params given to run_template still win. Exits 0 when they did. Run it
with `python examples/templates_yaml.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sideline import RunStatus
from templates import app, indexed  # the app and template of examples/templates.py

HERE = Path(__file__).resolve().parent


def main() -> int:
    """Load the defaults, run the template twice; return the exit code."""
    app.templates.load_defaults(HERE / "templates.yaml")
    app.templates.load_defaults(HERE / "templates.toml")  # the same values, in TOML
    [template] = app.list_templates()
    print(f"template {template.name} params with file defaults: {template.params()}")
    with app.worker(concurrency=2):
        first = app.wait(app.run_template("enrich_and_index", {"doc_id": 1}), timeout_s=10)
        second = app.wait(app.run_template("enrich_and_index", {"doc_id": 2, "lang": "de"}),
                          timeout_s=10)
    for doc in indexed:
        print(f"indexed {doc['title']!r} into {doc['index']!r} as {doc['lang']!r}")
    ok = (first.status is RunStatus.SUCCEEDED and second.status is RunStatus.SUCCEEDED
          and sorted((d["title"], d["lang"], d["index"]) for d in indexed) == [
              ("Document 1", "fr", "archive"), ("Document 2", "de", "archive")])
    print("templates_yaml OK" if ok else "templates_yaml FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
