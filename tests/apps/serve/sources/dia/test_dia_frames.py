"""Undoing Dia's delay pattern step by step, and which DAC windows to decode when (no torch)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diaproto.apps.serve.sources.dia.frames import (
    EXACT_CONTEXT,
    ChunkShape,
    Undelay,
    Window,
    WindowPlan,
)

DELAYS = (0, 8, 9, 10, 11, 12, 13, 14, 15)
EOS = 1024


def row(step: int) -> list[int]:
    """Step ``step``'s tokens, channel c = 100 * c + step, so a frame shows where it came from."""
    return [100 * c + step for c in range(len(DELAYS))]


def test_frame_zero_is_whole_after_step_16_then_one_frame_per_step() -> None:
    undelay = Undelay(DELAYS, EOS)
    made = [undelay.push(row(step)) for step in range(40)]
    assert made[:15] == [0] * 15
    assert made[15:] == [1] * 25
    # Frame f takes channel c from step f + delay[c].
    assert undelay.frames[0] == [100 * c + d for c, d in enumerate(DELAYS)]
    assert undelay.frames[24] == [100 * c + 24 + d for c, d in enumerate(DELAYS)]


def test_channel_zero_eos_ends_the_audio_before_its_frame() -> None:
    undelay = Undelay(DELAYS, EOS)
    eos_step = 30
    for step in range(eos_step + 20):
        tokens = row(step)
        if step >= eos_step:
            tokens[0] = EOS
        undelay.push(tokens)
    assert len(undelay.frames) == eos_step
    assert undelay.ended


def test_undelay_rejects_bad_rows_and_patterns() -> None:
    with pytest.raises(ValueError, match="9 tokens"):
        Undelay(DELAYS, EOS).push([1, 2])
    with pytest.raises(ValueError, match="non-negative"):
        Undelay((0, -1), EOS)


def test_the_first_window_waits_for_its_look_ahead() -> None:
    plan = WindowPlan(ChunkShape(4, 10), ChunkShape(16, 10), left_context=12)
    assert plan.next_window(0, 13, final=False) is None
    assert plan.next_window(0, 14, final=False) == Window(0, 0, 4, 14)
    assert plan.first_chunk_steps(max(DELAYS)) == 4 + 10 + 15
    # Later chunks take left context and the steady shape.
    assert plan.next_window(4, 29, final=False) is None
    assert plan.next_window(4, 30, final=False) == Window(0, 4, 20, 30)
    assert plan.next_window(20, 46, final=False) == Window(8, 20, 36, 46)
    assert plan.exact


def test_at_the_end_the_rest_is_decoded_a_chunk_at_a_time() -> None:
    plan = WindowPlan(ChunkShape(4, 10), ChunkShape(16, 10), left_context=12)
    assert plan.next_window(20, 50, final=True) == Window(8, 20, 36, 50)
    assert plan.next_window(36, 50, final=True) == Window(24, 36, 50, 50)
    assert plan.next_window(50, 50, final=True) is None
    assert plan.next_window(0, 3, final=True) == Window(0, 0, 3, 3)


@given(
    first=st.integers(1, 20),
    first_r=st.integers(0, 14),
    steady=st.integers(1, 40),
    steady_r=st.integers(0, 14),
    left=st.integers(0, 16),
    total=st.integers(0, 300),
)
def test_windows_cover_every_frame_once_with_the_context_asked_for(
    *, first: int, first_r: int, steady: int, steady_r: int, left: int, total: int
) -> None:
    plan = WindowPlan(ChunkShape(first, first_r), ChunkShape(steady, steady_r), left)
    kept: list[int] = []
    sent = 0
    for available in range(total + 1):  # frames arrive one at a time, then the end
        final = available == total
        while (window := plan.next_window(sent, available, final=final)) is not None:
            assert window.keep_start == sent
            assert window.start == max(0, sent - left)
            assert window.stop <= available
            lookahead = first_r if sent == 0 else steady_r
            assert (
                window.stop == available if final else window.stop - window.keep_stop == lookahead
            )
            kept.extend(range(window.keep_start, window.keep_stop))
            sent = window.keep_stop
    assert kept == list(range(total))


def test_plan_parse_and_validation() -> None:
    assert WindowPlan.parse("4:4, 16:12, 8") == WindowPlan(ChunkShape(4, 4), ChunkShape(16, 12), 8)
    assert not WindowPlan.parse("4:4,16:12,8").exact
    assert WindowPlan().exact and WindowPlan().first.lookahead == EXACT_CONTEXT
    with pytest.raises(ValueError, match="K0:R0,K:R,L"):
        WindowPlan.parse("4,16")
    with pytest.raises(ValueError, match="at least one frame"):
        ChunkShape(0, 4)
    with pytest.raises(ValueError, match="lookahead"):
        ChunkShape(4, -1)
    with pytest.raises(ValueError, match="left_context"):
        WindowPlan(left_context=-1)
