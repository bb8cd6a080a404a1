"""The Redis journal (diaproto.cluster) against a real Valkey server: what one worker writes,
another reads whole and follows live; an owner that vanishes, a Redis that restarts empty or
hangs, are explicit to every reader, never a silent skip."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis
from support import POLL_LIMIT, wait_until
from valkey_server import ValkeyServer, valkey_server

from diaproto.cluster import RedisJournal, keys
from diaproto.journal import (
    Ending,
    History,
    ListenerReport,
    Record,
    StreamHead,
    Unavailable,
    contiguous,
)
from diaproto.wire import ErrorCode


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    with valkey_server(tmp_path) as server:
        yield server


@pytest.fixture
def journals(valkey: ValkeyServer) -> Iterator[tuple[RedisJournal, RedisJournal]]:
    owner = RedisJournal(valkey.url, worker="owner")
    other = RedisJournal(valkey.url, worker="other")
    try:
        yield owner, other
    finally:
        owner.close()
        other.close()


class Heard:
    """What a follow delivered, from the journal's reader thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[Record] = []
        self.endings: list[Ending | Unavailable] = []

    def on_records(self, records: Sequence[Record]) -> None:
        with self.lock:
            self.records.extend(records)

    def on_end(self, ending: Ending | Unavailable) -> None:
        with self.lock:
            self.endings.append(ending)

    def frames(self) -> list[tuple[int, bytes]]:
        with self.lock:
            return contiguous(self.records, 0)


def read(journal: RedisJournal, token: str) -> History | Unavailable | None:
    box: list[History | Unavailable | None] = []
    done = threading.Event()

    def reply(found: History | Unavailable | None) -> None:
        box.append(found)
        done.set()

    journal.read(token, reply)
    assert done.wait(POLL_LIMIT), "the journal did not answer"
    return box[0]


def frames(n: int, start: int = 1) -> list[bytes]:
    return [f"frame {seq}".encode() for seq in range(start, start + n)]


def test_what_one_worker_writes_another_reads_and_follows(
    journals: tuple[RedisJournal, RedisJournal],
) -> None:
    owner, other = journals
    owner.begin("t1", StreamHead("e1", "owner"))
    owner.append("t1", Record(1, tuple(frames(3))))
    wait_until(lambda: isinstance(read(other, "t1"), History), "the head is written")
    history = read(other, "t1")
    assert isinstance(history, History)
    assert history.head == StreamHead("e1", "owner")
    wait_until(lambda: _last(read(other, "t1")) == 3, "the first record is written")
    heard = Heard()
    other.follow("t1", 2, heard.on_records, heard.on_end)  # it had 1 and 2
    owner.append("t1", Record(4, tuple(frames(2, start=4))))
    owner.end("t1", Ending(5))
    wait_until(lambda: bool(heard.endings), "the follower hears the end")
    assert [seq for seq, _ in contiguous(heard.records, 2)] == [3, 4, 5]
    assert heard.endings == [Ending(5, None, "")]
    final = read(other, "t1")
    assert isinstance(final, History)
    assert final.ending == Ending(5, None, "")
    assert final.frames() == list(enumerate(frames(5), start=1))


def test_an_unknown_stream_is_none_and_a_failed_one_keeps_its_reason(
    journals: tuple[RedisJournal, RedisJournal],
) -> None:
    owner, other = journals
    assert read(other, "nobody") is None
    owner.begin("t2", StreamHead("e2", "owner", credit_based=True))
    owner.end("t2", Ending(0, "the model failed", ErrorCode.INTERNAL))
    wait_until(lambda: _ended(read(other, "t2")), "the ending is written")
    history = read(other, "t2")
    assert isinstance(history, History)
    assert history.ending == Ending(0, "the model failed", ErrorCode.INTERNAL)
    assert history.frames() == []
    assert history.head == StreamHead("e2", "owner", credit_based=True)  # (t1's is not)


def test_reports_reach_the_owner(
    journals: tuple[RedisJournal, RedisJournal],
) -> None:
    owner, other = journals
    owner.begin("t3", StreamHead("e3", "owner"))
    reports: list[ListenerReport] = []
    owner.watch_reports("t3", reports.append)
    # A worker reports on a stream it has read (begin clears what an earlier one had).
    wait_until(lambda: isinstance(read(other, "t3"), History), "the head is written")
    other.report("t3", ListenerReport("other", 2, True))
    wait_until(lambda: bool(reports), "the owner hears the report")
    assert reports == [ListenerReport("other", 2, True)]


def test_a_stream_begun_again_starts_afresh(journals: tuple[RedisJournal, RedisJournal]) -> None:
    owner, other = journals
    owner.begin("t4", StreamHead("old", "owner"))
    owner.append("t4", Record(1, tuple(frames(2))))
    owner.begin("t4", StreamHead("new", "owner"))
    owner.append("t4", Record(1, (b"fresh",)))
    wait_until(lambda: _last(read(other, "t4")) == 1, "the new history is written")
    history = read(other, "t4")
    assert isinstance(history, History)
    assert history.head.epoch == "new"
    assert history.frames() == [(1, b"fresh")]


def test_a_record_lost_on_the_way_is_an_exact_gap(
    journals: tuple[RedisJournal, RedisJournal], valkey: ValkeyServer
) -> None:
    owner, other = journals
    owner.begin("t5", StreamHead("e5", "owner"))
    owner.append("t5", Record(1, tuple(frames(2))))
    wait_until(lambda: _last(read(other, "t5")) == 2, "written")
    heard = Heard()
    other.follow("t5", 2, heard.on_records, heard.on_end)
    # Record 3 never reaches Redis (as when the writer's queue overflowed); 4 does.
    owner.append("t5", Record(4, (b"four",)))
    wait_until(lambda: bool(heard.records), "the follower hears record 4")
    with pytest.raises(Exception, match="cannot resume after 2; oldest message still held is 4"):
        contiguous(heard.records, 2)


def test_a_vanished_owner_ends_its_followers_with_generation_lost(
    valkey: ValkeyServer,
) -> None:
    owner = RedisJournal(valkey.url, worker="short-lived")
    other = RedisJournal(valkey.url, worker="survivor")
    try:
        owner.begin("t6", StreamHead("e6", "short-lived"))
        owner.append("t6", Record(1, (b"one",)))
        wait_until(lambda: _last(read(other, "t6")) == 1, "written")
        heard = Heard()
        other.follow("t6", 0, heard.on_records, heard.on_end)
        wait_until(lambda: bool(heard.records), "the follower hears record 1")
        owner.close()  # no end written; its alive key expires within ALIVE_FOR seconds
        wait_until(lambda: bool(heard.endings), "the follower is told", limit=POLL_LIMIT * 3)
        (ending,) = heard.endings
        assert isinstance(ending, Ending)
        assert ending.code == ErrorCode.GENERATION_LOST
        assert ending.last_seq == 1
        assert "short-lived" in str(ending.error)
    finally:
        owner.close()
        other.close()


def test_a_redis_that_restarts_empty_is_a_gap_and_one_that_is_away_is_unavailable(
    journals: tuple[RedisJournal, RedisJournal], valkey: ValkeyServer
) -> None:
    owner, other = journals
    owner.begin("t7", StreamHead("e7", "owner"))
    owner.append("t7", Record(1, tuple(frames(2))))
    wait_until(lambda: _last(read(other, "t7")) == 2, "written")
    heard = Heard()
    other.follow("t7", 2, heard.on_records, heard.on_end)
    valkey.kill()
    assert isinstance(read(other, "t7"), Unavailable)
    valkey.start()  # same port, nothing kept
    assert read(other, "t7") is None, "the history is gone, and said to be"
    owner.append("t7", Record(3, (b"three",)))  # written to the empty server
    owner.append("t7", Record(5, (b"five",)))  # 4 was lost with the old server
    wait_until(lambda: len(heard.records) >= 2, "the follower hears what came after")
    with pytest.raises(Exception, match="oldest message still held is 5"):
        contiguous(heard.records, 2)


def test_the_writer_sends_many_records_per_round_trip(
    journals: tuple[RedisJournal, RedisJournal], valkey: ValkeyServer
) -> None:
    owner, _ = journals
    valkey.pause()  # writes queue up while Redis hangs
    try:
        for n in range(50):
            owner.begin(f"g{n}", StreamHead("e", "owner"))
            owner.append(f"g{n}", Record(1, (b"x",)))
    finally:
        valkey.resume()
    wait_until(lambda: owner.stats.appended == 50, "all appended")
    client = redis.Redis.from_url(valkey.url)
    try:
        wait_until(lambda: client.xlen(keys.ring("g49")) == 1, "the last record is in Redis")
    finally:
        client.close()
    assert max(owner.stats.batch_sizes) > 10, "records waiting together leave together"


def test_a_fenced_writer_cannot_end_the_stream_for_its_readers(
    journals: tuple[RedisJournal, RedisJournal],
) -> None:
    owner, other = journals
    zombie = other  # any writer: what fences it is the lease its records and end carry
    owner.begin("t10", StreamHead("e10", "owner"))
    owner.append("t10", Record(1, (b"one",), lease=2))
    wait_until(lambda: _last(read(other, "t10")) == 1, "written")
    heard = Heard()
    other.follow("t10", 0, heard.on_records, heard.on_end)
    zombie.end("t10", Ending(1, "the zombie is done", "internal", lease=1))
    owner.append("t10", Record(2, (b"two",), lease=2))
    owner.end("t10", Ending(2, lease=2))
    wait_until(lambda: bool(heard.endings), "the follower hears an end")
    assert heard.endings == [Ending(2, None, "", 2)], "the writer's, not the zombie's"
    assert [seq for seq, _ in heard.frames()] == [1, 2]
    history = read(other, "t10")
    assert isinstance(history, History) and history.ending == Ending(2, None, "", 2)


def test_a_failing_callback_does_not_stop_the_journal(
    journals: tuple[RedisJournal, RedisJournal],
) -> None:
    owner, other = journals

    def broken(_: History | Unavailable | None) -> None:
        raise RuntimeError("the loop that asked has ended")

    other.read("nobody", broken)
    assert read(other, "nobody") is None, "the next read is answered"
    owner.begin("t8", StreamHead("e8", "owner"))
    wait_until(lambda: isinstance(read(other, "t8"), History), "written")
    calls: list[int] = []

    def broken_records(records: Sequence[Record]) -> None:
        calls.append(len(records))
        raise RuntimeError("the loop that follows has ended")

    other.follow("t8", 0, broken_records, lambda _: None)
    heard = Heard()
    other.follow("t9", 0, heard.on_records, heard.on_end)
    owner.begin("t9", StreamHead("e9", "owner"))
    owner.append("t8", Record(1, (b"one",)))
    owner.append("t9", Record(1, (b"one",)))
    wait_until(lambda: bool(heard.records) and bool(calls), "both follows were delivered")


def _last(found: History | Unavailable | None) -> int:
    return found.last_seq if isinstance(found, History) else -1


def _ended(found: History | Unavailable | None) -> bool:
    return isinstance(found, History) and found.ending is not None
