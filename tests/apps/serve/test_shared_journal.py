"""The service's side of the shared journal, on the in-memory journal and a fake clock: what
the owner writes (batched, never delaying a first chunk), what it hears of listeners elsewhere
(and forgets when they go stale), and what a mirror on another worker makes of the records:
the same sequence numbers, or an explicit ``replay_gap``, ``going_away`` or end."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from diaproto.apps.serve.mirror import REACH_TIMEOUT, MirroredGeneration
from diaproto.apps.serve.publication import REPORT_EVERY, REPORT_STALE, Publication
from diaproto.journal import (
    Ending,
    History,
    ListenerReport,
    MemoryJournal,
    Record,
    StreamHead,
    Unavailable,
)
from diaproto.wire import ErrorCode


@dataclass
class _Timer:
    due: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class ClockRuntime:
    """One thread, a clock the test moves: timers fire when it passes them."""

    clock: float = 0.0
    timers: list[_Timer] = field(default_factory=list)

    def now(self) -> float:
        return self.clock

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        callback()

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(self.clock + delay, callback)
        self.timers.append(timer)
        return timer

    def start_worker(self, target: Callable[[], None], name: str = "worker") -> None:
        raise AssertionError("nothing here runs on a worker")

    def advance(self, seconds: float) -> None:
        self.clock += seconds
        while True:
            due = [t for t in self.timers if not t.cancelled and t.due <= self.clock]
            if not due:
                return
            timer = min(due, key=lambda t: t.due)
            self.timers.remove(timer)
            timer.callback()


class _Session:
    def wake(self) -> None:
        pass


@dataclass(eq=False)
class Heard:
    session: _Session = field(default_factory=_Session)
    paused: bool = False
    chunks: list[bytes] = field(default_factory=list)
    ended: bool = False
    failure: tuple[str, str] | None = None

    def chunk(self, data: bytes, now: float) -> None:
        self.chunks.append(data)

    def end(self, now: float) -> None:
        self.ended = True

    def fail(self, message: str, now: float, code: str = ErrorCode.INTERNAL) -> None:
        self.failure = (code, message)


def history_of(journal: MemoryJournal, token: str) -> History:
    found: list[History | Unavailable | None] = []
    journal.read(token, found.append)
    (history,) = found
    assert isinstance(history, History)
    return history


# --- the owner: Publication ---------------------------------------------------------------------


def test_a_first_chunk_leaves_at_once_and_a_steady_stream_in_records() -> None:
    journal = MemoryJournal("owner")
    runtime = ClockRuntime()
    publication = Publication(journal, "t", "e1", runtime, lambda: None)
    publication.frame(b"1", runtime.now())
    assert [r.frames for r in history_of(journal, "t").records] == [(b"1",)]
    for n in range(2, 6):  # steady: 4 frames to a record
        runtime.advance(0.001)
        publication.frame(bytes([n]), runtime.now())
    runtime.advance(0.001)
    publication.frame(b"6", runtime.now())  # waits for company...
    assert history_of(journal, "t").last_seq == 5
    runtime.advance(0.1)  # ...up to its deadline
    assert history_of(journal, "t").last_seq == 6
    publication.frame(b"7", runtime.now() + 0.001)
    publication.end(Ending(7))
    publication.end(Ending(7))  # once
    publication.frame(b"8", runtime.now())  # after the end: nothing
    history = history_of(journal, "t")
    assert history.ending == Ending(7)
    assert [seq for seq, _ in history.frames()] == list(range(1, 8))


def test_an_early_flush_timer_waits_again() -> None:
    journal = MemoryJournal("owner")
    runtime = ClockRuntime()
    publication = Publication(journal, "t", "e", runtime, lambda: None)
    publication.frame(b"1", 0.0)
    publication.frame(b"2", 0.001)  # waits until 0.026
    (timer,) = [t for t in runtime.timers if not t.cancelled]
    timer.due = 0.01  # a timer that fires early (clocks differ)
    runtime.advance(0.01)
    assert history_of(journal, "t").last_seq == 1
    runtime.advance(0.02)
    assert history_of(journal, "t").last_seq == 2


def test_reports_from_elsewhere_count_until_they_go_stale() -> None:
    journal = MemoryJournal("owner")
    elsewhere = journal.for_worker("b")
    runtime = ClockRuntime()
    changes: list[int] = []
    publication = Publication(journal, "t", "e", runtime, lambda: changes.append(1))
    elsewhere.report("t", ListenerReport("b", 2, False))
    journal.report("t", ListenerReport("owner", 5, True))  # its own: not counted
    assert publication.elsewhere(runtime.now()).listeners == 2
    elsewhere.report("t", ListenerReport("c", 1, True))
    assert publication.elsewhere(runtime.now()).paused
    elsewhere.report("t", ListenerReport("c", 0, False))  # c's listener left
    assert not publication.elsewhere(runtime.now()).paused
    runtime.advance(REPORT_EVERY)
    elsewhere.report("t", ListenerReport("b", 1, False))  # refreshed
    runtime.advance(REPORT_STALE - 0.5)
    assert publication.elsewhere(runtime.now()).listeners == 1
    runtime.advance(1.0)  # b stopped reporting: it counts no more, and the owner is told
    assert publication.elsewhere(runtime.now()).listeners == 0
    assert len(changes) == 5  # four reports, one expiry
    publication.end(Ending(0))
    elsewhere.report("t", ListenerReport("b", 1, False))  # after the end: ignored
    assert publication.elsewhere(runtime.now()).listeners == 0


# --- another worker: MirroredGeneration --------------------------------------------------------


def mirror_of(
    journal: MemoryJournal, runtime: ClockRuntime, idle: list[MirroredGeneration] | None = None
) -> MirroredGeneration:
    other = journal.for_worker("b")
    sink = idle if idle is not None else []
    return MirroredGeneration.from_history("t", history_of(other, "t"), runtime, other, sink.append)


def started(journal: MemoryJournal, *records: Record) -> None:
    journal.begin("t", StreamHead("e1", journal.worker))
    for record in records:
        journal.append("t", record)


def test_a_mirror_replays_what_was_written_and_hears_what_follows() -> None:
    journal = MemoryJournal("owner")
    runtime = ClockRuntime()
    started(journal, Record(1, (b"1", b"2")))
    reports: list[ListenerReport] = []
    journal.watch_reports("t", reports.append)
    mirror = mirror_of(journal, runtime)
    assert (mirror.epoch, mirror.replay.last_seq, mirror.running) == ("e1", 2, False)
    listener = Heard()
    mirror.attach(listener)
    assert reports[-1] == ListenerReport("b", 1, False)
    journal.append("t", Record(3, (b"3",)))
    assert listener.chunks == [b"3"]
    runtime.advance(REPORT_EVERY)  # refreshed while it listens
    assert len(reports) == 2
    listener.paused = True
    mirror.update_gate()
    assert reports[-1] == ListenerReport("b", 1, True)
    journal.end("t", Ending(3))
    assert listener.ended and mirror.finished and mirror.failed is None and mirror.lasting
    mirror.update_gate()  # ended: nothing more to report
    assert len(reports) == 3


def test_a_hole_on_the_way_is_a_replay_gap_never_a_skip() -> None:
    journal = MemoryJournal("owner")
    runtime = ClockRuntime()
    started(journal, Record(1, (b"1",)))
    mirror = mirror_of(journal, runtime)
    listener = Heard()
    mirror.attach(listener)
    journal.append("t", Record(3, (b"3",)))  # 2 never arrived
    assert listener.chunks == []
    assert listener.failure is not None
    assert listener.failure[0] == ErrorCode.REPLAY_GAP
    assert "records 2 to 2" in listener.failure[1]
    journal.append("t", Record(4, (b"4",)))  # nothing more for this mirror
    assert listener.chunks == []


def test_an_ending_past_what_arrived_is_a_replay_gap() -> None:
    journal = MemoryJournal("owner")
    runtime = ClockRuntime()
    started(journal, Record(1, (b"1",)))
    mirror = mirror_of(journal, runtime)
    listener = Heard()
    mirror.attach(listener)
    journal.end("t", Ending(3))
    assert listener.failure is not None and listener.failure[0] == ErrorCode.REPLAY_GAP


def test_a_history_with_holes_keeps_what_follows_the_last() -> None:
    journal = MemoryJournal("owner")
    started(journal, Record(1, (b"1",)), Record(3, (b"3", b"4")), Record(6, (b"6",)))
    mirror = mirror_of(journal, ClockRuntime())
    assert (mirror.replay.oldest_seq, mirror.replay.last_seq) == (6, 6)


def test_a_history_that_ended_past_its_records_is_a_replay_gap() -> None:
    journal = MemoryJournal("owner")
    started(journal, Record(1, (b"1",)))
    journal.end("t", Ending(3))  # records 2 and 3 never made it to the journal
    mirror = mirror_of(journal, ClockRuntime())
    assert mirror.finished and mirror.failed_code == ErrorCode.REPLAY_GAP
    assert "after 1 are missing" in str(mirror.failed)


def test_a_mirror_nobody_attaches_to_stops_after_the_grace() -> None:
    journal = MemoryJournal("owner")
    runtime = ClockRuntime()
    started(journal, Record(1, (b"1",)))
    idle: list[MirroredGeneration] = []
    mirror = mirror_of(journal, runtime, idle)
    runtime.advance(10.0)
    assert mirror.stopped and idle == [mirror]


def test_a_finished_or_failed_history_is_a_finished_mirror() -> None:
    journal = MemoryJournal("owner")
    started(journal, Record(1, (b"1",)))
    journal.end("t", Ending(1, "the model failed", ErrorCode.INTERNAL))
    mirror = mirror_of(journal, ClockRuntime())
    assert mirror.finished and mirror.failed == "the model failed"
    assert mirror.failed_code == ErrorCode.INTERNAL


def test_a_journal_that_stops_answering_is_going_away() -> None:
    journal = MemoryJournal("owner", max_streams=1)
    runtime = ClockRuntime()
    started(journal, Record(1, (b"1",)))
    mirror = mirror_of(journal, runtime)
    listener = Heard()
    mirror.attach(listener)
    journal.begin("another", StreamHead("e", "owner"))  # the bound drops "t"
    assert listener.failure is not None and listener.failure[0] == ErrorCode.GOING_AWAY
    assert not mirror.lasting, "this worker lost its view: a fresh read may do better"


def test_a_resume_waits_for_its_record_to_arrive_and_no_longer() -> None:
    journal = MemoryJournal("owner")
    runtime = ClockRuntime()
    started(journal, Record(1, (b"1",)))
    mirror = mirror_of(journal, runtime)
    answers: list[bool] = []
    mirror.when_reached(1, answers.append)  # here already
    mirror.when_reached(2, answers.append)
    mirror.when_reached(9, answers.append)
    journal.append("t", Record(2, (b"2",)))
    assert answers == [True, True]
    runtime.advance(REACH_TIMEOUT)
    assert answers == [True, True, False]
    mirror.when_reached(5, answers.append)
    journal.end("t", Ending(2))  # ended before 5 came
    mirror.when_reached(5, answers.append)  # and after
    assert answers == [True, True, False, False, False]


def test_a_mirror_with_no_listener_stops_after_the_grace() -> None:
    journal = MemoryJournal("owner")
    runtime = ClockRuntime()
    started(journal, Record(1, (b"1",)))
    reports: list[ListenerReport] = []
    journal.watch_reports("t", reports.append)
    idle: list[MirroredGeneration] = []
    mirror = mirror_of(journal, runtime, idle)
    first, second = Heard(), Heard()
    mirror.attach(first)
    mirror.detach(first, cancelled=False, grace=5.0)
    mirror.detach(first, cancelled=False, grace=5.0)  # twice: harmless
    mirror.attach(second)  # came back within the grace
    runtime.advance(5.0)
    assert not mirror.stopped
    answers: list[bool] = []
    mirror.when_reached(7, answers.append)
    mirror.detach(second, cancelled=False, grace=5.0)
    runtime.advance(5.0)
    assert mirror.stopped and idle == [mirror] and answers == [False]
    assert reports[-1] == ListenerReport("b", 0, False)
    mirror.stop()  # once
    journal.append("t", Record(2, (b"2",)))  # no longer followed
    assert mirror.replay.last_seq == 1


@pytest.mark.parametrize("cancelled", [True, False])
def test_a_mirror_whose_last_listener_cancels_or_ends_stops_at_once(cancelled: bool) -> None:
    journal = MemoryJournal("owner")
    runtime = ClockRuntime()
    started(journal, Record(1, (b"1",)))
    mirror = mirror_of(journal, runtime)
    listener = Heard()
    mirror.attach(listener)
    mirror.detach(listener, cancelled=cancelled, grace=0.0 if not cancelled else 5.0)
    assert mirror.stopped


# --- fencing: a job taken over by another model worker -----------------------------------------


def test_a_fenced_writers_records_and_ending_are_ignored() -> None:
    journal = MemoryJournal("owner")
    runtime = ClockRuntime()
    started(journal, Record(1, (b"1",), lease=1))
    mirror = mirror_of(journal, runtime)
    listener = Heard()
    mirror.attach(listener)
    journal.append("t", Record(2, (b"2",), lease=2))  # the new writer goes on from 2
    journal.append("t", Record(3, (b"zombie",), lease=1))  # the old one, woken up
    journal.append("t", Record(3, (b"3",), lease=2))
    journal.end("t", Ending(3, lease=1))  # the zombie's end: not the stream's
    assert listener.chunks == [b"2", b"3"]
    assert not listener.ended
    mirror._take_end(Ending(3, lease=2))  # as the journal would deliver the new writer's
    assert listener.ended


def test_a_job_run_again_from_the_start_after_frames_were_heard_is_generation_lost() -> None:
    journal = MemoryJournal("owner")
    runtime = ClockRuntime()
    started(journal, Record(1, (b"1", b"2"), lease=1))
    mirror = mirror_of(journal, runtime)
    listener = Heard()
    mirror.attach(listener)
    journal.append("t", Record(1, (b"other 1",), lease=2))
    assert listener.failure is not None
    assert listener.failure[0] == ErrorCode.GENERATION_LOST
    assert listener.chunks == []


def test_a_history_keeps_the_newest_writers_records_and_ending() -> None:
    journal = MemoryJournal("owner")
    started(
        journal,
        Record(1, (b"new 1",), lease=2),
        Record(2, (b"zombie 2",), lease=1),
        Record(2, (b"new 2",), lease=2),
    )
    journal.end("t", Ending(2, lease=1))  # the zombie's
    mirror = mirror_of(journal, ClockRuntime())
    assert [entry.payload for entry in mirror.replay.since(0)] == [b"new 1", b"new 2"]
    assert not mirror.finished, "the zombie's end is not the stream's"
