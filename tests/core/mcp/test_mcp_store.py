"""Streamable HTTP sessions by id (idle expiry on the caller's clock) and the event store
that makes SSE streams resumable (ids encode the stream, bounded, gaps refused)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diaproto.errors import LocalProtocolError
from diaproto.mcp.eventstore import EventStore, MemoryEventStore, ReplayRefused
from diaproto.mcp.registry import SessionRegistry, new_session_id

# --- registry ------------------------------------------------------------------------------


def test_ids_are_32_hex_characters_and_unique() -> None:
    ids = {new_session_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[0-9a-f]{32}", session_id) for session_id in ids)


def test_add_get_remove() -> None:
    registry: SessionRegistry[str] = SessionRegistry(10.0)
    first = registry.add("a", 0.0)
    second = registry.add("b", 0.0)
    assert first != second
    assert len(registry) == 2
    assert list(registry) == [first, second]
    assert registry.get(first, 1.0) == "a"
    assert registry.get("unknown", 1.0) is None
    assert registry.remove(first) == "a"
    assert registry.remove(first) is None
    assert registry.get(first, 1.0) is None
    assert list(registry) == [second]


def test_a_session_made_elsewhere_is_adopted_under_its_own_id() -> None:
    registry: SessionRegistry[str] = SessionRegistry(10.0)
    adopted = "ab" * 16
    assert adopted not in registry
    assert registry.add("moved", 0.0, session_id=adopted) == adopted
    assert adopted in registry
    assert registry.get(adopted, 1.0) == "moved"
    with pytest.raises(LocalProtocolError, match="registered already"):
        registry.add("again", 1.0, session_id=adopted)


def test_iteration_survives_removal() -> None:
    registry: SessionRegistry[int] = SessionRegistry(1.0)
    for n in range(3):
        registry.add(n, 0.0)
    for session_id in registry:
        registry.remove(session_id)
    assert len(registry) == 0


def test_expiry_only_when_idle() -> None:
    registry: SessionRegistry[str] = SessionRegistry(10.0)
    quiet = registry.add("quiet", 0.0)
    used = registry.add("used", 0.0)
    assert registry.next_deadline() == 10.0
    registry.get(used, 6.0)
    assert registry.expire(9.9, lambda value: False) == []
    assert registry.expire(10.0, lambda value: False) == ["quiet"]
    assert registry.get(quiet, 10.0) is None
    assert registry.next_deadline() == 16.0
    assert registry.expire(16.0, lambda value: False) == ["used"]
    assert registry.next_deadline() is None


def test_a_busy_session_does_not_expire_and_counts_as_active() -> None:
    registry: SessionRegistry[str] = SessionRegistry(10.0)
    session_id = registry.add("streaming", 0.0)
    assert registry.expire(50.0, lambda value: True) == []
    assert registry.next_deadline() == 60.0  # busy until 50 counts as activity
    assert registry.expire(59.0, lambda value: False) == []
    assert registry.expire(60.0, lambda value: False) == ["streaming"]
    assert registry.get(session_id, 60.0) is None


def test_activity_never_goes_back() -> None:
    registry: SessionRegistry[str] = SessionRegistry(10.0)
    session_id = registry.add("s", 5.0)
    registry.get(session_id, 1.0)  # a late-arriving clock reading
    assert registry.next_deadline() == 15.0


def test_max_sessions() -> None:
    registry: SessionRegistry[str] = SessionRegistry(10.0, max_sessions=2)
    first = registry.add("a", 0.0)
    registry.add("b", 0.0)
    assert registry.full
    with pytest.raises(LocalProtocolError):
        registry.add("c", 0.0)
    registry.remove(first)
    assert not registry.full
    registry.add("c", 0.0)


def test_a_repeating_id_source_is_skipped() -> None:
    ids: Iterator[str] = iter(["same", "same", "same", "other"])
    registry: SessionRegistry[str] = SessionRegistry(10.0, new_id=lambda: next(ids))
    assert registry.add("a", 0.0) == "same"
    assert registry.add("b", 0.0) == "other"


def test_a_full_table_evicts_never_used_sessions_first_oldest_first() -> None:
    """Issue 12: one client filling the table must not lock everyone else out."""
    registry: SessionRegistry[str] = SessionRegistry(10.0, max_sessions=4)
    ids = {name: registry.add(name, float(n), owner=f"10.0.0.{n}") for n, name in enumerate("abcd")}
    registry.get(ids["a"], 5.0)  # used
    registry.get(ids["c"], 4.0)  # used, longer ago than a
    busy = {"b"}
    room = registry.make_room("10.0.0.9", lambda value: value in busy)
    assert room.evicted == ["d"] and room.refused is None  # never used (b is busy)
    registry.add("e", 6.0, owner="10.0.0.9")
    busy = {"b", "e"}
    assert registry.make_room("10.0.0.9", lambda value: value in busy).evicted == ["c"]
    registry.add("f", 7.0, owner="10.0.0.9")
    busy = {"a", "b", "e", "f"}
    room = registry.make_room("10.0.0.9", lambda value: value in busy)
    assert room.evicted == [] and room.refused == "full"
    assert len(registry) == 4


def test_the_least_recently_active_session_is_evicted_wherever_it_stands() -> None:
    registry: SessionRegistry[str] = SessionRegistry(10.0, max_sessions=3)
    ids = [registry.add(name, 0.0) for name in "abc"]
    for session_id, now in zip(ids, (2.0, 1.0, 3.0), strict=True):
        registry.get(session_id, now)
    assert registry.make_room("", lambda value: False).evicted == ["b"]


def test_sessions_per_owner_are_bounded() -> None:
    registry: SessionRegistry[str] = SessionRegistry(10.0, max_sessions=100, max_per_owner=2)
    first = registry.add("first", 0.0, owner="a")
    registry.get(first, 1.0)
    registry.add("second", 2.0, owner="a")
    assert registry.make_room("b", lambda value: False).evicted == []  # another owner: room
    room = registry.make_room("a", lambda value: False)
    assert room.evicted == ["second"] and room.refused is None  # never used goes first
    registry.add("third", 3.0, owner="a")
    room = registry.make_room("a", lambda value: True)
    assert room.evicted == [] and room.refused == "owner"
    assert registry.owned("a") == 2
    registry.remove(first)
    assert registry.owned("a") == 1
    assert registry.make_room("a", lambda value: True).refused is None
    with pytest.raises(LocalProtocolError):
        bounded: SessionRegistry[str] = SessionRegistry(10.0, max_per_owner=1)
        bounded.add("x", 0.0, owner="o")
        bounded.add("y", 0.0, owner="o")


def test_expiry_forgets_the_owner() -> None:
    registry: SessionRegistry[str] = SessionRegistry(1.0, max_per_owner=1)
    registry.add("x", 0.0, owner="o")
    assert registry.expire(1.0, lambda value: False) == ["x"]
    assert registry.owned("o") == 0


def test_session_bounds_must_be_positive() -> None:
    with pytest.raises(LocalProtocolError):
        SessionRegistry(1.0, max_sessions=0)
    with pytest.raises(LocalProtocolError):
        SessionRegistry(1.0, max_per_owner=0)


@pytest.mark.parametrize("timeout", [0.0, -1.0])
def test_idle_timeout_must_be_positive(timeout: float) -> None:
    with pytest.raises(LocalProtocolError):
        SessionRegistry(timeout)


# --- event store ---------------------------------------------------------------------------


def test_ids_encode_the_stream() -> None:
    store = MemoryEventStore()
    assert [store.store("r1", m) for m in ("", "a", "b")] == ["r1.1", "r1.2", "r1.3"]
    assert store.store("g2", "x") == "g2.1"
    assert store.store("r1", "c") == "r1.4"
    assert len(store) == 2


def test_replay_after_an_id() -> None:
    store = MemoryEventStore()
    for message in ("", "a", "b", "c"):
        store.store("r1", message)
    assert store.replay_after("r1.2") == ("r1", [("r1.3", "b"), ("r1.4", "c")])
    assert store.replay_after("r1.4") == ("r1", [])
    assert store.replay_after("r1.0") == (
        "r1",
        [("r1.1", ""), ("r1.2", "a"), ("r1.3", "b"), ("r1.4", "c")],
    )


def test_replay_never_crosses_streams() -> None:
    store = MemoryEventStore()
    store.store("r1", "one-a")
    store.store("r2", "two-a")
    store.store("r1", "one-b")
    store.store("r2", "two-b")
    assert store.replay_after("r1.1") == ("r1", [("r1.2", "one-b")])
    assert store.replay_after("r2.1") == ("r2", [("r2.2", "two-b")])


@pytest.mark.parametrize(
    "event_id",
    [
        "",
        "5",
        "r1",
        "r1.",
        "r9.1",  # unknown stream
        "r1.x",
        "r1.-1",
        "r1.+1",
        "r1. 1",
        "r1.1_0",
        "r1.²",  # a digit to str.isdigit, not to int()
        "r1.٣",  # an Arabic-Indic digit
        "r1." + "9" * 5000,  # more digits than int() converts
        "r1.99",  # never sent
    ],
)
def test_bad_ids_are_refused(event_id: str) -> None:
    store = MemoryEventStore()
    store.store("r1", "a")
    with pytest.raises(ReplayRefused):
        store.replay_after(event_id)


def test_eviction_makes_an_old_id_a_gap() -> None:
    store = MemoryEventStore(max_events=3)
    for n in range(5):
        store.store("r1", f"m{n}")
    # r1.1 and r1.2 are gone; resuming after r1.2 is still exact, after r1.1 is a gap.
    assert store.replay_after("r1.2") == ("r1", [("r1.3", "m2"), ("r1.4", "m3"), ("r1.5", "m4")])
    with pytest.raises(ReplayRefused, match="no longer held"):
        store.replay_after("r1.1")


def test_the_byte_bound_keeps_the_newest_event() -> None:
    store = MemoryEventStore(max_bytes=10)
    store.store("r1", "12345")
    store.store("r1", "67890")
    assert store.store("r1", "x" * 50) == "r1.3"  # over the bound alone, still held
    assert store.replay_after("r1.2") == ("r1", [("r1.3", "x" * 50)])
    with pytest.raises(ReplayRefused):
        store.replay_after("r1.1")


def test_max_streams_forgets_the_oldest() -> None:
    store = MemoryEventStore(max_streams=2)
    store.store("a", "1")
    store.store("b", "1")
    store.store("a", "2")  # an existing stream: nothing is evicted
    store.store("c", "1")
    assert len(store) == 2
    with pytest.raises(ReplayRefused):
        store.replay_after("a.1")
    assert store.replay_after("b.0") == ("b", [("b.1", "1")])


def test_forget() -> None:
    store = MemoryEventStore()
    store.store("r1", "a")
    store.forget("r1")
    store.forget("never")
    with pytest.raises(ReplayRefused):
        store.replay_after("r1.0")
    assert store.store("r1", "b") == "r1.1"  # a forgotten name starts over


@pytest.mark.parametrize("stream", ["", "a.b", "."])
def test_stream_names(stream: str) -> None:
    with pytest.raises(LocalProtocolError):
        MemoryEventStore().store(stream, "x")


@pytest.mark.parametrize(
    "bounds",
    [
        {"max_events": 0},
        {"max_bytes": 0},
        {"max_streams": 0},
        {"max_events": -1},
    ],
)
def test_bounds_must_be_positive(bounds: dict[str, int]) -> None:
    with pytest.raises(LocalProtocolError):
        MemoryEventStore(**bounds)


def test_memory_store_is_an_event_store() -> None:
    store: EventStore = MemoryEventStore()
    assert store.store("s", "m") == "s.1"


@settings(max_examples=150)
@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.text(max_size=6)), max_size=40),
    st.integers(1, 6),
    st.integers(1, 30),
    st.text(max_size=8),
)
def test_replay_is_exact_or_refused(
    log: list[tuple[str, str]], max_events: int, max_bytes: int, resume_from: str
) -> None:
    """Against a model: a replay is exactly the stream's events after the id, or refused."""
    store = MemoryEventStore(max_events=max_events, max_bytes=max_bytes, max_streams=2)
    sent: dict[str, list[tuple[str, str]]] = {}
    for stream, message in log:
        event_id = store.store(stream, message)
        if event_id == f"{stream}.1":
            sent[stream] = []  # new, or evicted (max_streams) and started over
        sent[stream].append((event_id, message))
    candidates = [resume_from] + [event_id for events in sent.values() for event_id, _ in events]
    for event_id in candidates:
        try:
            stream, events = store.replay_after(event_id)
        except ReplayRefused:
            continue
        history = sent[stream]
        after = int(event_id.rpartition(".")[2])
        assert events == [(i, m) for i, m in history if int(i.rpartition(".")[2]) > after]
