"""The transition table: complete, enforced by ``_enter``, and what the docs show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from diaproto.errors import LocalProtocolError
from diaproto.server import ServerConnection, State
from diaproto.server.state import MEANINGS, NEXT_STATES, TRANSITIONS

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "architecture.md"
COMMAND = "python tools/state_table.py"


def state_table(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, ROOT / "tools" / "state_table.py", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_state_has_a_meaning_and_a_row() -> None:
    assert set(TRANSITIONS) == set(MEANINGS) == set(State)
    for targets in TRANSITIONS.values():
        assert all(causes and all(causes) for causes in targets.values())


def test_closed_is_final_and_every_other_state_can_close() -> None:
    assert NEXT_STATES[State.CLOSED] == frozenset()
    for state in State:
        assert state not in NEXT_STATES[state]  # no change is a change to the same state
        assert state is State.CLOSED or State.CLOSED in NEXT_STATES[state]


def test_enter_refuses_a_change_the_table_does_not_list() -> None:
    conn = ServerConnection(0.0)
    with pytest.raises(LocalProtocolError, match="no transition from AWAITING_REQUEST to CLOSING"):
        conn._enter(State.CLOSING)
    assert conn.state is State.AWAITING_REQUEST


def test_the_docs_show_the_current_table() -> None:
    result = state_table("--check")
    assert result.returncode == 0, f"docs/architecture.md is stale: run {COMMAND}"


def test_a_stale_page_fails_the_check_and_is_rewritten(tmp_path: Path) -> None:
    page = DOC.read_text(encoding="utf-8")
    stale = tmp_path / "architecture.md"
    stale.write_text(page.replace(f"| {MEANINGS[State.CLOSED]} |", "| gone |"), encoding="utf-8")
    assert stale.read_text(encoding="utf-8") != page
    result = state_table("--check", stale)
    assert result.returncode == 1
    assert COMMAND in result.stderr
    assert state_table(stale).returncode == 0
    assert stale.read_text(encoding="utf-8") == page
