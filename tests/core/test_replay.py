"""ReplayBuffer: bounded by count and bytes, and ``since`` never skips silently."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diaproto.errors import ReplayGap
from diaproto.replay import ReplayBuffer, ReplayEntry


def filled(n: int, *, size: int = 10, **bounds: int) -> ReplayBuffer[str]:
    buffer: ReplayBuffer[str] = ReplayBuffer(7, **bounds)
    for seq in range(1, n + 1):
        buffer.append(seq, f"m{seq}", size)
    return buffer


class TestConstruction:
    @pytest.mark.parametrize(("messages", "nbytes"), [(0, 10), (10, 0), (-1, 10), (10, -5)])
    def test_bounds_must_be_positive(self, messages: int, nbytes: int) -> None:
        with pytest.raises(ValueError, match="must be positive"):
            ReplayBuffer(1, max_messages=messages, max_bytes=nbytes)

    def test_empty_buffer(self) -> None:
        buffer: ReplayBuffer[str] = ReplayBuffer(3)
        assert len(buffer) == 0
        assert buffer.last_seq == 0
        assert buffer.oldest_seq == 1  # last_seq + 1 when empty
        assert buffer.held_bytes == 0
        assert buffer.since(0) == []


class TestAppend:
    def test_sequence_numbers_must_increase(self) -> None:
        buffer = filled(3)
        with pytest.raises(ValueError, match="must increase"):
            buffer.append(3, "again", 1)
        with pytest.raises(ValueError, match="must increase"):
            buffer.append(2, "older", 1)
        assert buffer.last_seq == 3
        assert len(buffer) == 3  # the refused appends changed nothing

    def test_evicts_by_count(self) -> None:
        buffer = filled(5, max_messages=3)
        assert len(buffer) == 3
        assert buffer.oldest_seq == 3
        assert buffer.last_seq == 5
        assert buffer.held_bytes == 30

    def test_evicts_by_bytes(self) -> None:
        buffer = filled(5, size=10, max_bytes=25)
        assert [e.seq for e in buffer.since(3)] == [4, 5]
        assert buffer.oldest_seq == 4
        assert buffer.held_bytes == 20

    def test_keeps_the_newest_even_when_it_alone_is_too_big(self) -> None:
        buffer = filled(2, size=10, max_bytes=15)
        buffer.append(3, "huge", 100)
        assert len(buffer) == 1
        assert buffer.since(2) == [ReplayEntry(3, "huge", 100)]
        assert buffer.held_bytes == 100


class TestSince:
    def test_returns_exactly_the_later_messages_in_order(self) -> None:
        buffer = filled(5)
        assert buffer.since(2) == [
            ReplayEntry(3, "m3", 10),
            ReplayEntry(4, "m4", 10),
            ReplayEntry(5, "m5", 10),
        ]
        assert [e.seq for e in buffer.since(0)] == [1, 2, 3, 4, 5]

    def test_nothing_missed(self) -> None:
        buffer = filled(5, max_messages=2)
        assert buffer.since(5) == []
        assert buffer.since(9) == []  # ahead of us: nothing to send, not a gap

    def test_exactly_at_the_window_edge_is_not_a_gap(self) -> None:
        buffer = filled(6, max_messages=3)  # holds 4, 5, 6
        assert [e.seq for e in buffer.since(3)] == [4, 5, 6]

    def test_gap_raises_with_details(self) -> None:
        buffer = filled(6, max_messages=3)  # holds 4, 5, 6
        with pytest.raises(ReplayGap) as info:
            buffer.since(2)  # 3 was evicted
        assert info.value.stream_id == 7
        assert info.value.after == 2
        assert info.value.oldest_available == 4
        assert "cannot resume after 2" in str(info.value)


@given(
    sizes=st.lists(st.integers(0, 50), max_size=40),
    max_messages=st.integers(1, 10),
    max_bytes=st.integers(1, 200),
    data=st.data(),
)
def test_since_is_exact_or_raises_only_for_evicted(
    sizes: list[int], max_messages: int, max_bytes: int, data: st.DataObject
) -> None:
    """Contiguous sequence numbers (as the scheduler gives): ``since`` returns exactly what
    was appended after ``after``, or raises exactly when one of those was evicted."""
    buffer: ReplayBuffer[int] = ReplayBuffer(1, max_messages=max_messages, max_bytes=max_bytes)
    appended = [ReplayEntry(seq, seq * 100, size) for seq, size in enumerate(sizes, start=1)]
    for entry in appended:
        buffer.append(entry.seq, entry.payload, entry.size)
    # The bounds hold (one oversized newest message may stay alone).
    assert len(buffer) <= max_messages
    assert buffer.held_bytes <= max_bytes or len(buffer) == 1
    held = buffer.since(buffer.oldest_seq - 1)
    assert buffer.held_bytes == sum(e.size for e in held)
    # The held entries are a suffix of what was appended (eviction only from the front).
    assert held == appended[len(appended) - len(held) :]

    after = data.draw(st.integers(0, len(sizes) + 2), label="after")
    wanted = [e for e in appended if e.seq > after]
    evicted = appended[: len(appended) - len(held)]
    if any(e.seq > after for e in evicted):
        with pytest.raises(ReplayGap):
            buffer.since(after)
    else:
        assert buffer.since(after) == wanted


@given(
    seqs=st.lists(st.integers(1, 1000), unique=True, max_size=30).map(sorted),
    max_messages=st.integers(1, 8),
    after=st.integers(0, 1001),
)
def test_since_never_skips_with_sparse_sequence_numbers(
    seqs: list[int], max_messages: int, after: int
) -> None:
    """With gaps in the numbering the buffer cannot tell a never-sent number from an evicted
    one; it may refuse, but what it returns is always complete."""
    buffer: ReplayBuffer[int] = ReplayBuffer(1, max_messages=max_messages)
    for seq in seqs:
        buffer.append(seq, seq, 1)
    try:
        got = buffer.since(after)
    except ReplayGap as gap:
        assert gap.oldest_available > after + 1
        # Refusing is only allowed when the window does not reach back to ``after``.
        assert buffer.oldest_seq > after + 1
    else:
        assert [e.seq for e in got] == [s for s in seqs if s > after]
