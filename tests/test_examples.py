"""Every script in examples/ runs to completion and exits 0.

Scripts are discovered with a glob, so a new example is tested as soon as it exists.
Each runs in its own interpreter, with Python warnings turned into errors as in the
rest of the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))
TIMEOUT_S = 60


def test_the_proof_example_exists() -> None:
    assert EXAMPLES_DIR / "proof.py" in EXAMPLES


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda path: path.name)
def test_example_exits_zero(script: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    try:
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                                timeout=TIMEOUT_S, cwd=EXAMPLES_DIR.parent, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{script.name} did not finish within {TIMEOUT_S} s\n"
                    f"--- stdout\n{_text(exc.stdout)}\n--- stderr\n{_text(exc.stderr)}")
    assert result.returncode == 0, (
        f"{script.name} exited with {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")


def _text(output: str | bytes | None) -> str:
    """TimeoutExpired may carry bytes even when text=True was asked for."""
    if isinstance(output, bytes):
        return output.decode("utf-8", "replace")
    return output or ""
