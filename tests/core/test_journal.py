"""Journal records (diaproto/journal.py): packing round-trips and refuses anything a writer
could not have packed; the batcher loses, repeats and reorders nothing and never delays a
frame after a quiet spell; reading back gives exactly the frames after a point, or an exact
gap, with a fenced writer's records left out."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diaproto.errors import ReplayGap
from diaproto.journal import (
    MAX_FRAME,
    MAX_FRAMES,
    Batcher,
    Ending,
    History,
    JournalError,
    ListenerReport,
    MemoryJournal,
    Record,
    StreamHead,
    Unavailable,
    contiguous,
    pack,
    unpack,
)

FRAMES = st.lists(st.binary(max_size=40), min_size=1, max_size=20)

# --- packing --------------------------------------------------------------------------------


@given(FRAMES)
def test_pack_round_trips(frames: list[bytes]) -> None:
    assert unpack(pack(frames)) == tuple(frames)


@given(FRAMES, st.data())
def test_a_cut_or_extended_record_is_refused(frames: list[bytes], data: st.DataObject) -> None:
    packed = pack(frames)
    cut = data.draw(st.integers(0, len(packed) - 1))
    with pytest.raises(JournalError):
        unpack(packed[:cut])
    with pytest.raises(JournalError):
        unpack(packed + data.draw(st.binary(min_size=1, max_size=8)))


def test_malformed_records_are_refused_with_the_reason() -> None:
    with pytest.raises(JournalError, match="no frame"):
        unpack(b"\x00\x00")
    with pytest.raises(JournalError, match="cut off in its lengths"):
        unpack(b"\x00\x02\x00\x00\x00\x01")
    with pytest.raises(JournalError, match="add up to 3 bytes, but 2 follow"):
        unpack(b"\x00\x01\x00\x00\x00\x03ab")


def test_pack_and_record_refuse_impossible_contents() -> None:
    with pytest.raises(ValueError, match="1 to"):
        pack([])
    with pytest.raises(ValueError, match="1 to"):
        pack([b""] * (MAX_FRAMES + 1))

    class Huge(bytes):
        def __len__(self) -> int:
            return MAX_FRAME + 1

    with pytest.raises(ValueError, match="at most"):
        pack([Huge()])
    for first_seq, frames, lease in [(0, (b"a",), 0), (1, (), 0), (1, (b"a",), -1)]:
        with pytest.raises(ValueError):
            Record(first_seq, frames, lease)
    assert Record(5, (b"a", b"b")).last_seq == 6


# --- batching -------------------------------------------------------------------------------


@given(
    st.lists(st.tuples(st.binary(max_size=8), st.sampled_from([0.0, 0.005, 0.0116, 0.03, 1.0]))),
    st.integers(1, 6),
    st.integers(1, 100),
    st.sampled_from([0.0, 0.01, 0.025, 0.05]),
    st.booleans(),
)
def test_batching_loses_repeats_and_reorders_nothing(
    adds: list[tuple[bytes, float]], max_frames: int, first_seq: int, quiet: float, late: bool
) -> None:
    batcher = Batcher(first_seq, max_frames=max_frames, max_delay=0.025, quiet=quiet)
    records: list[Record] = []
    now = 0.0
    never_added = True
    for frame, gap in adds:
        deadline = batcher.deadline()
        if deadline is not None and deadline <= now + gap and not late:
            # The caller's timer fires at the deadline (a late caller skips it).
            due = batcher.due(deadline)
            assert due is not None
            records.append(due)
        elif deadline is not None and deadline > now + gap:
            assert batcher.due(now + gap) is None  # not yet
        now += gap
        after_quiet = never_added or gap >= quiet
        never_added = False
        deadline = batcher.deadline()
        overdue = deadline is not None and now >= deadline
        record = batcher.add(frame, now)
        if after_quiet or overdue:
            # At once: a frame after a quiet spell, or frames past their deadline.
            assert record is not None and record.frames[-1] == frame
        if record is not None:
            assert record.last_seq == batcher.next_seq - 1 and batcher.waiting == 0
            records.append(record)
    last = batcher.flush()
    if last is not None:
        records.append(last)
    assert batcher.flush() is None and batcher.deadline() is None
    assert all(1 <= len(record.frames) <= max_frames for record in records)
    assert contiguous(records, first_seq - 1) == [
        (seq, frame) for seq, (frame, _) in enumerate(adds, start=first_seq)
    ]


def test_steady_frames_wait_for_company_and_a_first_frame_does_not() -> None:
    batcher = Batcher(max_frames=3, max_delay=0.025, quiet=0.025)
    assert batcher.add(b"first", 0.0) == Record(1, (b"first",))
    assert batcher.add(b"a", 0.0116) is None
    assert batcher.deadline() == pytest.approx(0.0366)
    assert batcher.add(b"b", 0.0232) is None
    assert batcher.add(b"c", 0.0348) == Record(2, (b"a", b"b", b"c"))  # a full record
    assert batcher.add(b"d", 0.0464) is None
    assert batcher.due(0.07) is None
    assert batcher.due(0.0714) == Record(5, (b"d",))  # its deadline
    assert batcher.add(b"after a pause", 1.0) == Record(6, (b"after a pause",))
    assert batcher.next_seq == 7


def test_batcher_refuses_impossible_settings() -> None:
    for kwargs in ({"max_frames": 0}, {"max_delay": -1.0}, {"quiet": -1.0}):
        with pytest.raises(ValueError):
            Batcher(**kwargs)
    with pytest.raises(ValueError, match="start at 1"):
        Batcher(0)


# --- reading back ---------------------------------------------------------------------------


def split(frames: list[bytes], first_seq: int, rng: random.Random, lease: int = 0) -> list[Record]:
    """The frames as records of random sizes, numbered from ``first_seq``."""
    records = []
    i = 0
    while i < len(frames):
        n = rng.randint(1, 4)
        records.append(Record(first_seq + i, tuple(frames[i : i + n]), lease))
        i += n
    return records


@given(FRAMES, st.integers(1, 50), st.data(), st.randoms(use_true_random=False))
def test_reading_back_gives_exactly_the_frames_after_a_point(
    frames: list[bytes], first_seq: int, data: st.DataObject, rng: random.Random
) -> None:
    records = split(frames, first_seq, rng)
    read = records + rng.sample(records, rng.randint(0, len(records)))  # some read twice
    rng.shuffle(read)
    last = first_seq + len(frames) - 1
    after = data.draw(st.integers(first_seq - 1, last))
    expected = list(enumerate(frames, start=first_seq))[after - first_seq + 1 :]
    assert contiguous(read, after) == expected


@given(FRAMES.filter(lambda f: len(f) >= 2), st.data(), st.randoms(use_true_random=False))
def test_a_missing_record_is_an_exact_gap(
    frames: list[bytes], data: st.DataObject, rng: random.Random
) -> None:
    records = split(frames, 1, rng)
    if len(records) < 2:
        return
    lost = data.draw(st.integers(0, len(records) - 2))  # not the last: frames follow it
    after = data.draw(st.integers(0, records[lost].first_seq - 1))
    read = records[:lost] + records[lost + 1 :]
    with pytest.raises(ReplayGap) as gap:
        contiguous(read, after, stream_id=7)
    assert (gap.value.stream_id, gap.value.after) == (7, records[lost].first_seq - 1)
    assert gap.value.oldest_available == records[lost + 1].first_seq
    # Lost at the end, it is no gap: nothing more is known to exist.
    assert (
        contiguous(records[:-1], 0) == list(enumerate(frames, start=1))[: records[-1].first_seq - 1]
    )


def test_a_fenced_writer_is_left_out_from_the_takeover_on() -> None:
    # Lease 1 wrote 1..4; lease 2 took over at 3 and wrote 3..6; lease 1, a zombie,
    # went on writing 5..8 after losing its lease.
    old = [Record(1, (b"1", b"2"), 1), Record(3, (b"3old", b"4old"), 1)]
    new = [Record(3, (b"3", b"4"), 2), Record(5, (b"5", b"6"), 2)]
    zombie = [Record(5, (b"5z", b"6z"), 1), Record(7, (b"7z", b"8z"), 1)]
    got = contiguous([*zombie, *new, *old], 0)
    assert got == [(1, b"1"), (2, b"2"), (3, b"3"), (4, b"4"), (5, b"5"), (6, b"6")]
    assert contiguous([], 0) == []
    assert contiguous(old, 4) == []
    # A reader given only what reaches past 4 learns the takeover from the store.
    assert contiguous(zombie, 4) == [(5, b"5z"), (6, b"6z"), (7, b"7z"), (8, b"8z")]
    assert contiguous(zombie, 4, takeovers={2: 3}) == []
    assert contiguous([new[1], *zombie], 4, takeovers={2: 3}) == [(5, b"5"), (6, b"6")]
    with pytest.raises(ValueError, match="0 or more"):
        contiguous(old, -1)


@given(
    st.lists(st.integers(1, 6), min_size=1, max_size=4),  # each writer's run, in frames
    st.lists(st.integers(0, 3), max_size=4),  # frames each fenced writer wrote on after it
    st.randoms(use_true_random=False),
    st.data(),
)
def test_fencing_keeps_each_frame_of_the_writer_that_held_the_lease(
    runs: list[int], zombie_runs: list[int], rng: random.Random, data: st.DataObject
) -> None:
    # Writer k (lease k) takes over at its first frame; the earlier writer, fenced, may go
    # on writing over the new one's numbers and beyond (other bytes: a "z").
    records: list[Record] = []
    takeovers: dict[int, int] = {}
    truth: list[tuple[int, bytes]] = []
    seq = 1
    for lease, run in enumerate(runs, start=1):
        takeovers[lease] = seq
        frames = [b"%d" % (seq + i) for i in range(run)]
        truth += list(enumerate(frames, start=seq))
        records += split(frames, seq, rng, lease)
        zombie = zombie_runs[lease - 1] if lease - 1 < len(zombie_runs) else 0
        if zombie and lease < len(runs):
            stale = [b"%dz" % (seq + run + i) for i in range(zombie)]
            records += split(stale, seq + run, rng, lease)
        seq += run
    rng.shuffle(records)
    after = data.draw(st.integers(0, seq - 1))
    expected = [(s, f) for s, f in truth if s > after]
    assert contiguous(records, after) == expected
    # A reader given only the records that reach past ``after``, and the takeover points.
    reaching = [record for record in records if record.last_seq > after]
    assert contiguous(reaching, after, takeovers=takeovers) == expected


# --- the port, in memory ----------------------------------------------------------------------


class Follower:
    def __init__(self) -> None:
        self.records: list[Record] = []
        self.endings: list[Ending | Unavailable] = []

    def on_records(self, records: Sequence[Record]) -> None:
        self.records.extend(records)

    def on_end(self, ending: Ending | Unavailable) -> None:
        self.endings.append(ending)


def read_now(journal: MemoryJournal, token: str) -> History | Unavailable | None:
    found: list[History | Unavailable | None] = []
    journal.read(token, found.append)
    (answer,) = found
    return answer


def test_memory_journal_serves_another_worker_what_one_wrote() -> None:
    owner = MemoryJournal("a")
    other = owner.for_worker("b")
    assert (owner.worker, other.worker) == ("a", "b")
    assert owner.available  # memory is always there
    assert read_now(other, "t") is None
    owner.begin("t", StreamHead("e1", "a"))
    owner.append("t", Record(1, (b"1", b"2")))
    follower = Follower()
    other.follow("t", 1, follower.on_records, follower.on_end)  # had 1: gets 1-2 again
    owner.append("t", Record(3, (b"3",)))
    owner.end("t", Ending(3))
    owner.append("t", Record(4, (b"4",)))  # after the end: refused
    owner.end("t", Ending(4, "late", "internal"))  # a second end: refused
    assert contiguous(follower.records, 1) == [(2, b"2"), (3, b"3")]
    assert follower.endings == [Ending(3)]
    history = read_now(other, "t")
    assert isinstance(history, History)
    assert history.head == StreamHead("e1", "a")
    assert history.last_seq == 3
    assert history.frames() == [(1, b"1"), (2, b"2"), (3, b"3")]
    late = Follower()
    other.follow("t", 3, late.on_records, late.on_end)  # an ended stream: its ending at once
    assert late.records == [] and late.endings == [Ending(3)]


def test_memory_journal_bounds_records_and_streams() -> None:
    journal = MemoryJournal(max_records=2, max_streams=2)
    journal.begin("old", StreamHead("e", "memory"))
    follower = Follower()
    journal.follow("old", 0, follower.on_records, follower.on_end)
    for seq in range(1, 5):
        journal.append("old", Record(seq, (bytes([seq]),)))
    history = read_now(journal, "old")
    assert isinstance(history, History)
    assert [record.first_seq for record in history.records] == [3, 4]  # the oldest went
    with pytest.raises(ReplayGap):
        contiguous(history.records, 1)
    journal.begin("two", StreamHead("e", "memory"))
    journal.begin("three", StreamHead("e", "memory"))  # "old" goes: its follower is told
    assert read_now(journal, "old") is None
    assert isinstance(follower.endings[-1], Unavailable)
    journal.append("old", Record(5, (b"5",)))  # a dropped stream takes nothing
    journal.end("old", Ending(5))
    assert read_now(journal, "old") is None
    with pytest.raises(ValueError, match="at least 1"):
        MemoryJournal(max_records=0)


def test_memory_journal_unknown_streams_and_cancelled_subscriptions() -> None:
    journal = MemoryJournal()
    follower = Follower()
    journal.follow("nobody", 0, follower.on_records, follower.on_end).cancel()
    assert follower.endings == [Unavailable("the journal has no such stream")]
    reports: list[ListenerReport] = []
    journal.watch_reports("nobody", reports.append).cancel()
    journal.report("nobody", ListenerReport("w", 1, False))
    journal.begin("t", StreamHead("e", "memory"))
    watch = journal.watch_reports("t", reports.append)
    journal.report("t", ListenerReport("w", 2, True))
    watch.cancel()
    watch.cancel()  # twice: harmless
    journal.report("t", ListenerReport("w", 0, False))
    assert reports == [ListenerReport("w", 2, True)]
    live = Follower()
    followed = journal.follow("t", 0, live.on_records, live.on_end)
    followed.cancel()
    followed.cancel()
    journal.append("t", Record(1, (b"x",)))
    assert live.records == []


def test_a_history_without_records_or_with_a_hole() -> None:
    head = StreamHead("e", "w")
    assert History(head, ()).frames() == [] and History(head, ()).last_seq == 0
    assert History(head, (), Ending(0, "failed", "internal")).last_seq == 0
    holed = History(head, (Record(2, (b"2",)), Record(4, (b"4",))))
    assert holed.last_seq == 4
    with pytest.raises(ReplayGap):
        holed.frames()
