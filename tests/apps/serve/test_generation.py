"""Generations: fan-out, gating by backpressure, cancellation, grace, completion, failure.

The worker is a real thread; the "loop" is this test's thread, draining what the worker hands
over through ``call_soon_threadsafe``. Waits are bounded; nothing asserts on timing.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import pytest

from diaproto.apps.serve.generation import Generation, GenerationRegistry
from diaproto.apps.serve.model_queue import Admission, ModelQueue
from diaproto.apps.serve.requests import StreamRequest

WAIT = 10.0


class FakeRuntime:
    def __init__(self) -> None:
        self.calls: queue.Queue[Callable[[], None]] = queue.Queue()
        self.timers: list[tuple[float, Callable[[], None], list[bool]]] = []
        self.workers: list[threading.Thread] = []

    def now(self) -> float:
        return 0.0

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        # Like every adapter's runtime: a worker waits until the loop has run its callback.
        done = threading.Event()

        def run() -> None:
            callback()
            done.set()

        self.calls.put(run)
        done.wait(WAIT)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer()
        self.timers.append((delay, callback, timer.cancelled))
        return timer

    def start_worker(self, target: Callable[[], None], name: str = "worker") -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self.workers.append(thread)
        thread.start()

    def run_one(self) -> None:
        self.calls.get(timeout=WAIT)()

    def run_until(self, condition: Callable[[], bool]) -> None:
        for _ in range(10_000):
            if condition():
                return
            self.run_one()
        raise AssertionError("condition never held")

    def fire_timers(self) -> None:
        timers, self.timers = self.timers, []
        for _, callback, cancelled in timers:
            if not cancelled[0]:
                callback()


@dataclass
class Timer:
    cancelled: list[bool] = field(default_factory=lambda: [False])

    def cancel(self) -> None:
        self.cancelled[0] = True


class CountingSource:
    """Yields ``per_sentence`` chunks per sentence; records what ran and whether it closed."""

    name = "counting"
    model_queue: ModelQueue | None = None

    def __init__(self, per_sentence: int = 5, fail_at: int | None = None) -> None:
        self.per_sentence = per_sentence
        self.fail_at = fail_at
        self.produced = 0
        self.sentences: list[str] = []
        self.voices: list[str] = []
        self.closed = 0

    def generate(
        self,
        text: str,
        voice: str,
        speed: float,
        *,
        stop: threading.Event | None = None,
        admission: Admission | None = None,
    ) -> Generator[bytes, None, None]:
        self.sentences.append(text)
        self.voices.append(voice)
        try:
            for i in range(self.per_sentence):
                if self.fail_at is not None and self.produced == self.fail_at:
                    raise RuntimeError("out of memory")
                self.produced += 1
                yield bytes([len(self.sentences), i]) * 4
        finally:
            self.closed += 1


class _Session:
    def wake(self) -> None:
        pass


@dataclass(eq=False)
class RecordingListener:
    session: _Session = field(default_factory=_Session)
    stream_id: int = 1
    paused: bool = False
    chunks: list[bytes] = field(default_factory=list)
    ended: bool = False
    failure: str | None = None

    def chunk(self, data: bytes, now: float) -> None:
        self.chunks.append(data)

    def end(self, now: float) -> None:
        self.ended = True

    def fail(self, message: str, now: float, code: str = "internal") -> None:
        self.failure = message


def make(
    source: CountingSource, text: str = "One. Two. Three."
) -> tuple[Generation, FakeRuntime, GenerationRegistry]:
    runtime = FakeRuntime()
    registry = GenerationRegistry()
    generation = Generation("t", StreamRequest(text, "S1"), source, runtime, registry.retire)
    registry.add(generation)
    return generation, runtime, registry


def listener() -> RecordingListener:
    return RecordingListener()


def test_sentences_stream_in_order_to_every_listener_then_end() -> None:
    source = CountingSource(per_sentence=3)
    generation, runtime, registry = make(source)
    first, second = listener(), listener()
    generation.attach(first)
    generation.attach(second)
    generation.start()
    runtime.run_until(lambda: generation.finished)
    assert source.sentences == ["One.", "Two.", "Three."]  # split, spoken one after another
    assert len(first.chunks) == 9 and first.chunks == second.chunks
    assert first.ended and second.ended
    assert [e.seq for e in generation.replay.since(0)] == list(range(1, 10))
    assert registry.get("t") is generation and "t" not in registry.live  # kept for resumes


def test_a_paused_listener_gives_the_worker_thread_back_and_resuming_takes_one() -> None:
    source = CountingSource(per_sentence=50)
    generation, runtime, _ = make(source, "Long.")
    slow = listener()
    generation.attach(slow)
    generation.start()
    runtime.run_until(lambda: len(slow.chunks) >= 2)
    slow.paused = True
    generation.update_gate()
    # The turn ends at its next chunk: at most the chunk in hand is computed, none is sent.
    runtime.run_until(lambda: not generation.producing)
    for worker in runtime.workers:
        worker.join(WAIT)
    assert not any(worker.is_alive() for worker in runtime.workers)  # no thread held
    delivered, produced = len(slow.chunks), source.produced
    assert produced <= delivered + 1 and source.closed == 0
    assert generation.running and not generation.finished  # its place in the source is kept
    slow.paused = False
    generation.update_gate()
    runtime.run_until(lambda: generation.finished)
    assert len(slow.chunks) == 50 and len(runtime.workers) >= 2  # a new turn, a new thread
    assert slow.chunks == [bytes([1, i]) * 4 for i in range(50)]  # nothing lost or repeated


def test_a_held_generation_that_is_stopped_closes_its_source_on_a_worker() -> None:
    source = CountingSource(per_sentence=10_000)
    generation, runtime, registry = make(source, "Endless.")
    only = listener()
    generation.attach(only)
    generation.start()
    runtime.run_until(lambda: len(only.chunks) >= 2)
    generation.detach(only, cancelled=False, grace=10.0)  # dropped: held for a resume
    runtime.run_until(lambda: not generation.producing)
    assert source.closed == 0 and generation.running
    runtime.fire_timers()  # nobody came back
    runtime.run_until(lambda: not generation.running)
    assert source.closed == 1 and generation.stopped and "t" not in registry.live


def test_cancel_by_the_last_listener_stops_the_worker_and_closes_the_source() -> None:
    source = CountingSource(per_sentence=10_000)
    generation, runtime, registry = make(source, "Endless.")
    only = listener()
    generation.attach(only)
    generation.start()
    runtime.run_until(lambda: len(only.chunks) >= 3)
    generation.detach(only, cancelled=True, grace=10.0)
    runtime.run_until(lambda: not generation.producing)  # the turn hands back to the loop
    runtime.workers[0].join(WAIT)
    assert not runtime.workers[0].is_alive() and not generation.running
    assert source.closed == 1  # the source's own cleanup ran: no orphaned compute
    assert generation.stopped and "t" not in registry.live


def test_a_dropped_listener_gets_a_grace_period_and_a_resume_cancels_the_stop() -> None:
    source = CountingSource(per_sentence=10_000)
    generation, runtime, _ = make(source, "Endless.")
    first = listener()
    generation.attach(first)
    generation.start()
    runtime.run_until(lambda: len(first.chunks) >= 2)
    generation.detach(first, cancelled=False, grace=10.0)
    assert not generation.stopped and len(runtime.timers) == 1
    again = listener()
    generation.attach(again)  # resumed within the grace period
    runtime.fire_timers()
    assert not generation.stopped
    runtime.run_until(lambda: len(again.chunks) >= 2)
    generation.detach(again, cancelled=False, grace=10.0)
    runtime.fire_timers()  # nobody came back this time
    assert generation.stopped
    runtime.run_until(lambda: not generation.running and not generation.producing)


def test_a_failing_model_fails_every_listener_with_its_message() -> None:
    source = CountingSource(per_sentence=5, fail_at=3)
    generation, runtime, _ = make(source, "One.")
    only = listener()
    generation.attach(only)
    generation.start()
    runtime.run_until(lambda: generation.finished)
    assert only.failure is not None and "out of memory" in only.failure
    assert len(only.chunks) == 3 and not only.ended


@pytest.mark.parametrize("grace", [0.0, -1.0])
def test_no_grace_means_stop_at_once(grace: float) -> None:
    source = CountingSource(per_sentence=10_000)
    generation, runtime, _ = make(source, "Endless.")
    only = listener()
    generation.attach(only)
    generation.start()
    runtime.run_until(lambda: len(only.chunks) >= 1)
    generation.detach(only, cancelled=False, grace=grace)
    assert generation.stopped
    runtime.run_until(lambda: not generation.running and not generation.producing)


def test_a_speaker_tag_holds_across_the_sentences_it_covers() -> None:
    source = CountingSource(per_sentence=1)
    generation, runtime, _ = make(source, "[S2] Hi there. How are you? [S1] Fine. Thanks.")
    generation.attach(listener())
    generation.start()
    runtime.run_until(lambda: generation.finished)
    assert source.voices == ["S2", "S2", "S1", "S1"]


@dataclass(eq=False)
class BrokenListener(RecordingListener):
    """Raises on its third chunk (an encoder's bug, a connection in a bad state)."""

    also_fail_raises: bool = False

    def chunk(self, data: bytes, now: float) -> None:
        if len(self.chunks) == 2:
            raise ValueError("the encoder broke")
        super().chunk(data, now)

    def fail(self, message: str, now: float, code: str = "internal") -> None:
        super().fail(message, now, code)
        if self.also_fail_raises:
            raise ValueError("and so did its failure")


@pytest.mark.parametrize("also_fail_raises", [False, True])
def test_a_listener_that_raises_fails_alone_and_the_others_hear_everything(
    also_fail_raises: bool, caplog: pytest.LogCaptureFixture
) -> None:
    source = CountingSource(per_sentence=3)
    generation, runtime, registry = make(source)
    broken, healthy = BrokenListener(also_fail_raises=also_fail_raises), listener()
    generation.attach(broken)
    generation.attach(healthy)
    generation.start()
    runtime.run_until(lambda: generation.finished)
    assert len(healthy.chunks) == 9 and healthy.ended  # the others go on, whole
    assert broken.failure == "internal error" and len(broken.chunks) == 2 and not broken.ended
    assert "t" not in registry.live  # the generation ended and was retired, not leaked
    assert "a listener failed" in caplog.text
