"""The client's state table: every move the clients make is in it, and no other is allowed."""

from __future__ import annotations

import pytest

from diaproto.client.state import TRANSITIONS, ClientState, transition
from diaproto.errors import LocalProtocolError


def test_every_state_has_a_row_and_closed_is_the_end() -> None:
    assert set(TRANSITIONS) == set(ClientState)
    assert TRANSITIONS[ClientState.CLOSED] == {}
    assert all(causes for row in TRANSITIONS.values() for causes in row.values())


@pytest.mark.parametrize("current", list(ClientState))
@pytest.mark.parametrize("new", list(ClientState))
def test_a_move_is_allowed_exactly_when_the_table_lists_it(
    current: ClientState, new: ClientState
) -> None:
    if new in TRANSITIONS[current]:
        assert transition(current, new) is new
    else:
        with pytest.raises(LocalProtocolError, match=f"no transition from {current.name}"):
            transition(current, new)
