"""A stream's history as journal records: frames packed several to an entry, batched on the
caller's clock, and read back whole or with an exact gap.

A journal keeps what a stream sent so that a listener elsewhere (another worker, after a
reconnect) can read it from any point. Storing one entry per frame costs an entry's overhead
for each ~1 KiB audio frame; storing one per second would delay every remote listener by a
second. This module decides, purely, what goes into each entry and whether what was read
back is whole:

- :class:`Record`: consecutive frames of one stream from ``first_seq`` on, with the writer's
  ``lease`` (a writer that lost its lease, a zombie, is fenced by it on reading);
- :func:`pack` / :func:`unpack`: a record's frames as one binary field
  (``u16 count, u32 length[count], payloads``), refused whole when malformed;
- :class:`Batcher`: frames into records on the caller's clock. A frame after a quiet spell
  leaves at once (a stream's first chunk, a sentence's first chunk: the time to first audio
  is untouched); under a steady stream frames wait up to ``max_delay`` for company, at most
  ``max_frames`` to a record;
- :func:`contiguous`: records read back (in any order, with duplicates and a fenced writer's
  records among them) to the frames after a sequence number, or :class:`ReplayGap` when one
  is missing: a hole is always explicit, never skipped over.

No I/O and no clock: a store (memory, Redis Streams) keeps the records, and time is an
argument.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from diaproto.errors import DiaprotoError, ReplayGap

_COUNT = struct.Struct("!H")
_LENGTH = struct.Struct("!I")
MAX_FRAMES = 0xFFFF
"""The most frames one record holds (its count is a u16)."""
MAX_FRAME = 0xFFFFFFFF
"""The largest frame a record holds (its length is a u32)."""


class JournalError(DiaprotoError):
    """A record that cannot be what a writer packed: truncated, with trailing bytes, or
    with an impossible count."""


@dataclass(frozen=True, slots=True)
class Record:
    """Frames ``first_seq``, ``first_seq + 1``, ... of one stream, written under ``lease``."""

    first_seq: int
    frames: tuple[bytes, ...]
    lease: int = 0

    def __post_init__(self) -> None:
        if self.first_seq < 1:
            raise ValueError("sequence numbers start at 1")
        if not 1 <= len(self.frames) <= MAX_FRAMES:
            raise ValueError(f"a record holds 1 to {MAX_FRAMES} frames")
        if self.lease < 0:
            raise ValueError("a lease cannot be negative")

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.frames) - 1


def pack(frames: Sequence[bytes]) -> bytes:
    """The frames as one field: their count (u16), each length (u32), then the bytes."""
    if not 1 <= len(frames) <= MAX_FRAMES:
        raise ValueError(f"a record holds 1 to {MAX_FRAMES} frames")
    if any(len(frame) > MAX_FRAME for frame in frames):
        raise ValueError(f"a frame holds at most {MAX_FRAME} bytes")
    lengths = b"".join(_LENGTH.pack(len(frame)) for frame in frames)
    return _COUNT.pack(len(frames)) + lengths + b"".join(frames)


def unpack(data: bytes) -> tuple[bytes, ...]:
    """The frames :func:`pack` made of ``data``; :class:`JournalError` if it cannot have."""
    if len(data) < _COUNT.size:
        raise JournalError("a record is shorter than its frame count")
    (count,) = _COUNT.unpack_from(data)
    if count == 0:
        raise JournalError("a record holds no frame")
    offset = _COUNT.size + count * _LENGTH.size
    if len(data) < offset:
        raise JournalError(f"a record of {count} frames is cut off in its lengths")
    lengths = [_LENGTH.unpack_from(data, _COUNT.size + i * _LENGTH.size)[0] for i in range(count)]
    if offset + sum(lengths) != len(data):
        raise JournalError(
            f"a record's frames add up to {sum(lengths)} bytes, but {len(data) - offset} follow"
        )
    frames = []
    for length in lengths:
        frames.append(data[offset : offset + length])
        offset += length
    return tuple(frames)


class Batcher:
    """One stream's frames into records, on the caller's clock.

    :meth:`add` returns a record when one is due: at once for a frame that follows a quiet
    spell (nothing added for ``quiet`` seconds, or nothing ever), else when ``max_frames``
    have gathered. Otherwise the frames wait, at most until :meth:`deadline`, when
    :meth:`due` returns them; :meth:`flush` returns whatever waits (at a sentence's or the
    stream's end)."""

    __slots__ = ("_frames", "_last_add", "_next_seq", "_since", "lease", "max_delay", "max_frames",
                 "quiet")  # fmt: skip

    def __init__(
        self,
        first_seq: int = 1,
        *,
        lease: int = 0,
        max_frames: int = 4,
        max_delay: float = 0.025,
        quiet: float = 0.025,
    ) -> None:
        if first_seq < 1:
            raise ValueError("sequence numbers start at 1")
        if not 1 <= max_frames <= MAX_FRAMES:
            raise ValueError(f"max_frames must be 1 to {MAX_FRAMES}")
        if max_delay < 0 or quiet < 0:
            raise ValueError("max_delay and quiet cannot be negative")
        self.lease = lease
        self.max_frames = max_frames
        self.max_delay = max_delay
        self.quiet = quiet
        self._next_seq = first_seq  # the sequence number of the first frame waiting
        self._frames: list[bytes] = []
        self._since: float | None = None  # when the first frame waiting was added
        self._last_add: float | None = None

    @property
    def next_seq(self) -> int:
        """The sequence number the next frame added gets."""
        return self._next_seq + len(self._frames)

    @property
    def waiting(self) -> int:
        """Frames added and not yet in a record."""
        return len(self._frames)

    def add(self, frame: bytes, now: float) -> Record | None:
        """Add the next frame; the record due now, if any (it holds this frame, after any
        that waited). Due: after a quiet spell, with ``max_frames`` gathered, or once the
        frames waiting are past their deadline (a caller late with :meth:`due`)."""
        after_quiet = self._last_add is None or now - self._last_add >= self.quiet
        overdue = self._since is not None and now >= self._since + self.max_delay
        self._last_add = now
        if not self._frames:
            self._since = now
        self._frames.append(frame)
        if after_quiet or overdue or len(self._frames) >= self.max_frames:
            return self.flush()
        return None

    def deadline(self) -> float | None:
        """When the frames waiting must leave (None: none waits)."""
        return None if self._since is None else self._since + self.max_delay

    def due(self, now: float) -> Record | None:
        """The frames waiting, as a record, once their deadline has come."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        return self.flush()

    def flush(self) -> Record | None:
        """Whatever waits, as a record now (None: nothing waits)."""
        if not self._frames:
            return None
        record = Record(self._next_seq, tuple(self._frames), self.lease)
        self._next_seq += len(self._frames)
        self._frames = []
        self._since = None
        return record


def contiguous(
    records: Iterable[Record],
    after: int,
    *,
    takeovers: Mapping[int, int] | None = None,
    stream_id: int = 0,
) -> list[tuple[int, bytes]]:
    """The frames after sequence number ``after`` in ``records``, as (seq, frame), in order.

    Records may come in any order and overlap (a record read twice counts once; a writer
    never writes one sequence number twice under one lease). Leases fence a writer that
    lost its own: from the first sequence number written under a higher lease on, frames
    under a lower one are a fenced writer's and are left out, whatever they hold (before
    that point they are the earlier writer's, and stand). That point is read from the
    records, and from ``takeovers`` (lease -> its first sequence number), which a reader
    that is not given every lease's first record must pass: a store keeps it beside the
    records. The frames must then run on from ``after + 1`` without a hole, else
    :class:`ReplayGap` names the last sequence number that can be honoured and the next
    one held (``stream_id`` is only for its message; ask again up to the gap for the
    frames before it). Nothing after ``after`` is an empty list."""
    if after < 0:
        raise ValueError("after is a sequence number: 0 or more")
    kept = list(records)
    takeover: dict[int, int] = dict(takeovers or {})  # lease -> its first sequence number
    for record in kept:
        takeover[record.lease] = min(takeover.get(record.lease, record.first_seq), record.first_seq)
    fenced_from: dict[int, float] = {}  # lease -> where a higher lease took over
    earliest_higher = float("inf")
    for lease in sorted(takeover, reverse=True):
        fenced_from[lease] = earliest_higher
        earliest_higher = min(earliest_higher, takeover[lease])
    by_seq: dict[int, bytes] = {}
    for record in kept:
        limit = fenced_from[record.lease]
        for seq, frame in enumerate(record.frames, start=record.first_seq):
            if after < seq < limit:
                by_seq.setdefault(seq, frame)
    frames: list[tuple[int, bytes]] = []
    expected = after + 1
    while expected in by_seq:
        frames.append((expected, by_seq.pop(expected)))
        expected += 1
    if by_seq:
        raise ReplayGap(stream_id, expected - 1, min(by_seq))
    return frames
