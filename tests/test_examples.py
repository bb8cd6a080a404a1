"""The examples run as users would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_property_test_example_runs_and_holds() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "property_test_a_handler.py")],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "property held"
