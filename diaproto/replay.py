"""A bounded ring of a stream's recent messages, so a reconnecting client gets what it missed."""

from __future__ import annotations

from collections import deque
from typing import Generic, NamedTuple, TypeVar

from diaproto.errors import ReplayGap

T = TypeVar("T")

ENTRY_OVERHEAD = 168
"""Bytes one held entry costs beyond its payload bytes, for ``bytes`` and ``str`` payloads
(64-bit CPython 3.11, measured with tracemalloc in ``tests/core/scheduler/test_overhead.py``):
its :class:`ReplayEntry` 72, its deque slot 8, its sequence number 32, its payload's object
header 33 (``bytes``) or 49 (ASCII ``str``), plus rounding. While the message is still
queued in the scheduler the sequence number and the payload are the queue's own objects,
shared, not copied: the buffer adds the entry and its slot, 80 bytes.
"""


class ReplayEntry(NamedTuple, Generic[T]):
    seq: int
    payload: T
    size: int


class ReplayBuffer(Generic[T]):
    """Keeps the last messages of one stream, by sequence number, within a count and byte bound.

    Sequence numbers must be appended in increasing order. ``since(after)`` returns exactly
    the messages with a larger sequence number, or raises :class:`ReplayGap` when some of
    them have already been evicted: a resume never loses messages silently.

    The bounds count payload bytes (``held_bytes``); in memory the buffer holds at most
    ``max_bytes`` of payload (or its one newest message, if that alone is bigger) and
    ``max_messages`` entries of :data:`ENTRY_OVERHEAD` each. It keeps the payload objects
    it is given (the scheduler's own, for a recording stream): no copy.
    """

    def __init__(self, stream_id: int, *, max_messages: int = 1024, max_bytes: int = 4 << 20):
        if max_messages <= 0 or max_bytes <= 0:
            msg = "max_messages and max_bytes must be positive"
            raise ValueError(msg)
        self.stream_id = stream_id
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._entries: deque[ReplayEntry[T]] = deque()
        self._bytes = 0
        self._last_seq = 0  # highest sequence number ever appended (0: none)

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def oldest_seq(self) -> int:
        """The oldest sequence number still held; ``last_seq + 1`` when empty."""
        return self._entries[0][0] if self._entries else self._last_seq + 1

    @property
    def held_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, seq: int, payload: T, size: int) -> None:
        if seq <= self._last_seq:
            msg = f"sequence numbers must increase: {seq} after {self._last_seq}"
            raise ValueError(msg)
        self._entries.append(ReplayEntry(seq, payload, size))
        self._bytes += size
        self._last_seq = seq
        while len(self._entries) > self.max_messages or (
            self._bytes > self.max_bytes and len(self._entries) > 1
        ):
            self._bytes -= self._entries.popleft().size

    def since(self, after: int) -> list[ReplayEntry[T]]:
        """Messages with sequence number > ``after``, oldest first."""
        if after >= self._last_seq:
            return []
        if after + 1 < self.oldest_seq:
            raise ReplayGap(self.stream_id, after, self.oldest_seq)
        return [entry for entry in self._entries if entry.seq > after]
