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
  is missing: a hole is always explicit, never skipped over;
- :class:`Journal`: the port a store implements (a stream's head, its records, its ending,
  and its listeners' reports), and :class:`MemoryJournal`, the store in this process.

No I/O and no clock: a store (memory, Redis Streams) keeps the records, and time is an
argument.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

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


# --- the port a store implements -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamHead:
    """What a journal keeps of a stream beside its records, written once when it begins."""

    epoch: str  # names this history: a stream begun again under the same token has another
    owner: str  # the worker that writes it
    # Its first listener granted credit: a resume elsewhere stays credit-based (protocol §10).
    credit_based: bool = False


@dataclass(frozen=True, slots=True)
class Ending:
    """How a stream ended, after its record ``last_seq``: whole (``error`` None) or not;
    written under ``lease`` (a reader ignores an ending from a writer since fenced)."""

    last_seq: int
    error: str | None = None
    code: str = ""  # the wire error code, when it failed
    lease: int = 0


@dataclass(frozen=True, slots=True)
class History:
    """What a journal holds of one stream: its head, the records it still keeps (the oldest
    may have aged out), and its ending once it has one."""

    head: StreamHead
    records: tuple[Record, ...]
    ending: Ending | None = None
    takeovers: Mapping[int, int] = field(default_factory=dict)

    @property
    def last_seq(self) -> int:
        """The last sequence number written (0: none)."""
        last = max((record.last_seq for record in self.records), default=0)
        return max(last, self.ending.last_seq) if self.ending is not None else last

    def frames(self, stream_id: int = 0) -> list[tuple[int, bytes]]:
        """The frames held, from the oldest record kept on, without a hole (else
        :class:`ReplayGap`)."""
        if not self.records:
            return []
        first = min(record.first_seq for record in self.records)
        return contiguous(self.records, first - 1, takeovers=self.takeovers, stream_id=stream_id)


@dataclass(frozen=True, slots=True)
class Unavailable:
    """The store could not answer (unreachable, refused): not the same as "no such stream"."""

    reason: str


@dataclass(frozen=True, slots=True)
class ListenerReport:
    """A worker's listeners of one stream: how many, and whether one of them is paused."""

    worker: str
    listeners: int
    paused: bool


class Subscription(Protocol):
    def cancel(self) -> None: ...


class Journal(Protocol):
    """A shared store of streams' histories, for listeners on other workers.

    The writer's calls (:meth:`begin`, :meth:`append`, :meth:`end`, :meth:`report`) never
    block: a store queues them and writes in the background, in order per stream. Answers
    come through callbacks, which a store may call on any thread (the caller hands them to
    its loop) and, in :class:`MemoryJournal`, at once.
    """

    @property
    def worker(self) -> str:
        """This process's name in the store (a stream's owner, a listener report's author)."""
        ...

    @property
    def available(self) -> bool:
        """False while the store cannot be reached (writes wait, new streams are refused)."""
        ...

    def begin(self, token: str, head: StreamHead) -> None: ...

    def append(self, token: str, record: Record) -> None: ...

    def end(self, token: str, ending: Ending) -> None: ...

    def read(self, token: str, reply: Callable[[History | Unavailable | None], None]) -> None:
        """The stream's history (None: the store has no such stream)."""
        ...

    def follow(
        self,
        token: str,
        after: int,
        on_records: Callable[[Sequence[Record]], None],
        on_end: Callable[[Ending | Unavailable], None],
    ) -> Subscription:
        """Records after ``after`` as they are written, then the ending (or why it cannot
        be followed any more)."""
        ...

    def report(self, token: str, report: ListenerReport) -> None:
        """Tell the stream's owner how many listeners this worker has and if one is paused."""
        ...

    def watch_reports(
        self, token: str, on_report: Callable[[ListenerReport], None]
    ) -> Subscription:
        """Other workers' reports on a stream this worker writes."""
        ...


class _Followed:
    __slots__ = ("on_end", "on_records", "stream")

    def __init__(
        self,
        stream: _Kept,
        on_records: Callable[[Sequence[Record]], None],
        on_end: Callable[[Ending | Unavailable], None],
    ) -> None:
        self.stream = stream
        self.on_records = on_records
        self.on_end = on_end

    def cancel(self) -> None:
        if self in self.stream.followers:
            self.stream.followers.remove(self)


class _Watched:
    __slots__ = ("on_report", "stream")

    def __init__(self, stream: _Kept, on_report: Callable[[ListenerReport], None]) -> None:
        self.stream = stream
        self.on_report = on_report

    def cancel(self) -> None:
        if self in self.stream.watchers:
            self.stream.watchers.remove(self)


@dataclass(eq=False)
class _Kept:
    head: StreamHead
    records: list[Record] = field(default_factory=list)
    ending: Ending | None = None
    followers: list[_Followed] = field(default_factory=list)
    watchers: list[_Watched] = field(default_factory=list)


class MemoryJournal:
    """A :class:`Journal` in this process's memory, for applications that share one process
    (and for tests of what uses the port). Callbacks run at once, on the caller's thread.

    Bounded like a store: at most ``max_records`` records a stream (the oldest go first, so
    a late reader sees an exact gap) and ``max_streams`` streams (the oldest begun go first).
    Each application that shares it passes its own ``worker`` name to :meth:`for_worker`.
    """

    def __init__(
        self, worker: str = "memory", *, max_records: int = 1024, max_streams: int = 256
    ) -> None:
        if max_records < 1 or max_streams < 1:
            raise ValueError("max_records and max_streams must be at least 1")
        self._worker = worker
        self.max_records = max_records
        self.max_streams = max_streams
        self._streams: OrderedDict[str, _Kept] = OrderedDict()

    @property
    def worker(self) -> str:
        return self._worker

    @property
    def available(self) -> bool:
        return True

    def for_worker(self, worker: str) -> MemoryJournal:
        """The same store, seen by another worker."""
        view = MemoryJournal(worker, max_records=self.max_records, max_streams=self.max_streams)
        view._streams = self._streams
        return view

    def begin(self, token: str, head: StreamHead) -> None:
        self._streams[token] = _Kept(head)
        while len(self._streams) > self.max_streams:
            _, dropped = self._streams.popitem(last=False)
            for follower in list(dropped.followers):
                follower.on_end(Unavailable("the journal dropped this stream (its bound)"))

    def append(self, token: str, record: Record) -> None:
        kept = self._streams.get(token)
        if kept is None or kept.ending is not None:
            return  # dropped by the bound, or ended: a store refuses what follows an end
        kept.records.append(record)
        del kept.records[: -self.max_records]
        for follower in list(kept.followers):
            follower.on_records((record,))

    def end(self, token: str, ending: Ending) -> None:
        kept = self._streams.get(token)
        if kept is None or kept.ending is not None:
            return
        kept.ending = ending
        for follower in list(kept.followers):
            follower.on_end(ending)
        kept.followers.clear()

    def read(self, token: str, reply: Callable[[History | Unavailable | None], None]) -> None:
        kept = self._streams.get(token)
        reply(None if kept is None else History(kept.head, tuple(kept.records), kept.ending))

    def follow(
        self,
        token: str,
        after: int,
        on_records: Callable[[Sequence[Record]], None],
        on_end: Callable[[Ending | Unavailable], None],
    ) -> Subscription:
        kept = self._streams.get(token)
        if kept is None:
            kept = _Kept(StreamHead("", ""))
            on_end(Unavailable("the journal has no such stream"))
            return _Followed(kept, on_records, on_end)
        newer = tuple(record for record in kept.records if record.last_seq > after)
        if newer:
            on_records(newer)
        followed = _Followed(kept, on_records, on_end)
        if kept.ending is not None:
            on_end(kept.ending)
        else:
            kept.followers.append(followed)
        return followed

    def report(self, token: str, report: ListenerReport) -> None:
        kept = self._streams.get(token)
        if kept is not None:
            for watcher in list(kept.watchers):
                watcher.on_report(report)

    def watch_reports(
        self, token: str, on_report: Callable[[ListenerReport], None]
    ) -> Subscription:
        kept = self._streams.get(token)
        if kept is None:
            return _Watched(_Kept(StreamHead("", "")), on_report)
        watched = _Watched(kept, on_report)
        kept.watchers.append(watched)
        return watched
