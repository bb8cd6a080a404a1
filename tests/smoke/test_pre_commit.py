"""The pre-commit hooks a contributor installs are valid and pass on the tree as committed.

mypy's hook is `make typecheck`, which `make test` runs on its own; the fast hooks run here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".pre-commit-config.yaml"
PRE_COMMIT = [sys.executable, "-m", "pre_commit"]
IN_A_CHECKOUT = (ROOT / ".git").exists()


def run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRE_COMMIT_HOME": str(home)}
    return subprocess.run(
        [*PRE_COMMIT, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )


def test_the_config_is_valid_and_has_the_hooks(tmp_path: Path) -> None:
    result = run("validate-config", str(CONFIG), home=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    text = CONFIG.read_text()
    for hook in ("id: ruff", "id: ruff-format", "id: mypy", "id: layering"):
        assert hook in text


@pytest.mark.skipif(not IN_A_CHECKOUT, reason="pre-commit runs on git's files")
def test_the_fast_hooks_pass_on_every_file(tmp_path: Path) -> None:
    for hook in ("ruff", "ruff-format", "layering"):
        result = run("run", "--all-files", hook, home=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Passed" in result.stdout
