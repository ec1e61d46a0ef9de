"""The `sideline` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sideline.demo import run_demo

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    failed = False
    for label, info, problems in run_demo(concurrency=args.concurrency):
        print(f"{label}  run {info.run_id}: {info.status}")
        for node in info.nodes:
            print(f"  node {node.id:>2}  {node.status:<10} after -> {list(node.successors)}")
        for problem in problems:
            failed = True
            print(f"  VIOLATION: {problem}")
    print("order respected in every run" if not failed else "ORDER VIOLATED")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sideline` console script."""
    parser = argparse.ArgumentParser(prog="sideline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the proof workflows on an embedded worker")
    demo.add_argument("-c", "--concurrency", type=int, default=4, help="worker threads")
    demo.set_defaults(handler=_demo)
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
