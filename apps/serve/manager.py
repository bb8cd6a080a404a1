"""Generations: one model run per request, fanned out to listeners, paced by backpressure.

A :class:`Generation` runs its source on a worker thread, sentence by sentence (so the first
sentence is heard while the rest is computed), and hands each chunk to the loop. It produces
only while no listener is paused: a listener's ``StreamPaused`` (its connection's budget, or
the client's credit, ran out) closes the gate, ``StreamResumed`` opens it. When the last
listener cancels, the worker stops at once; when it merely disconnects, the worker is held
for a grace period in which a client may resume, and then stopped. Held means the manager
pulls no more chunks; a source that computes ahead on its own thread (Dia finishes its current
text batch) stops at its next chunk or when the grace ends.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from diaproto.app import Cancellable, Runtime
from diaproto.apps.serve.model_queue import Admission, ModelBusy
from diaproto.apps.serve.requests import StreamRequest
from diaproto.apps.serve.sources import Source
from diaproto.apps.serve.text import split_sentences
from diaproto.outbound import Payload
from diaproto.replay import ReplayBuffer
from diaproto.wire import ErrorCode

log = logging.getLogger("diaproto.serve")

SPEAKER_TAG = re.compile(r"\s*\[(S[12])\]")
GATE_POLL = 0.1  # how often a held worker checks whether it was stopped
REPLAY_MESSAGES = 4096  # about 47 s of audio at 86 chunks a second
REPLAY_BYTES = 8 << 20
KEEP_FINISHED = 64  # finished generations kept for late resumes


class Waker(Protocol):
    def wake(self) -> None: ...


class Listener(Protocol):
    """One consumer of a generation: a wire stream, an SSE response, an HTTP body..."""

    paused: bool

    @property
    def session(self) -> Waker:
        """Where to signal that output was queued (a :class:`diaproto.app.Session`)."""
        ...

    def chunk(self, data: bytes, now: float) -> None: ...
    def end(self, now: float) -> None: ...
    def fail(self, message: str, now: float, code: str = ErrorCode.INTERNAL) -> None: ...


@dataclass(eq=False)
class Generation:
    token: str
    request: StreamRequest
    source: Source
    runtime: Runtime
    on_idle: Callable[[Generation], None]
    replay: ReplayBuffer[Payload] = field(init=False)
    listeners: list[Listener] = field(default_factory=list)
    finished: bool = False
    failed: str | None = None
    failed_code: str = ErrorCode.INTERNAL
    # The request's place with the source's model: taken by the front door (so that a full
    # model is a 503 before anything is sent), else by the worker; closed when it ends.
    admission: Admission | None = None
    chunks: int = 0
    _gate: threading.Event = field(default_factory=threading.Event)
    _stopped: threading.Event = field(default_factory=threading.Event)
    _worker_done: threading.Event = field(default_factory=threading.Event)
    _grace_timer: Cancellable | None = None

    def __post_init__(self) -> None:
        self.replay = ReplayBuffer(0, max_messages=REPLAY_MESSAGES, max_bytes=REPLAY_BYTES)
        self._gate.set()

    # --- loop side -------------------------------------------------------------------------

    def start(self) -> None:
        self.runtime.start_worker(self._run, name=f"generation-{self.token}")

    @property
    def running(self) -> bool:
        """True while the worker thread is alive (it may be held at the gate)."""
        return not self._worker_done.is_set()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def attach(self, listener: Listener) -> None:
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        self.listeners.append(listener)
        self.update_gate()

    def detach(self, listener: Listener, *, cancelled: bool, grace: float) -> None:
        """Remove a listener; the last one leaving stops the work (after ``grace`` unless
        it cancelled)."""
        if listener not in self.listeners:
            return  # it already ended with the generation
        self.listeners.remove(listener)
        if self.listeners or self.finished:
            self.update_gate()
            if not self.listeners:
                self.on_idle(self)
            return
        if cancelled or grace <= 0:
            self.stop()
        else:
            self._gate.clear()  # hold the worker: no compute for a listener that left
            self._grace_timer = self.runtime.call_later(grace, self._grace_over)

    def update_gate(self) -> None:
        if self.listeners and not any(listener.paused for listener in self.listeners):
            self._gate.set()
        else:
            self._gate.clear()

    def stop(self) -> None:
        """Stop generating for good (the worker exits at its next chunk or gate check)."""
        self._stopped.set()
        self._gate.set()
        self.on_idle(self)

    def _grace_over(self) -> None:
        self._grace_timer = None
        if not self.listeners:
            self.stop()

    def _deliver(self, data: bytes) -> None:
        if self._stopped.is_set():
            return
        seq = self.replay.last_seq + 1
        self.replay.append(seq, data, len(data))  # before sending: listeners number from it
        self.chunks += 1
        now = self.runtime.now()
        for listener in list(self.listeners):
            listener.chunk(data, now)
            listener.session.wake()

    def _complete(self) -> None:
        self.finished = True
        now = self.runtime.now()
        for listener in list(self.listeners):
            listener.end(now)
            listener.session.wake()
        self.listeners.clear()
        self.on_idle(self)

    def _fail(self, message: str, code: str) -> None:
        self.finished = True
        self.failed = message
        self.failed_code = code
        now = self.runtime.now()
        for listener in list(self.listeners):
            listener.fail(message, now, code)
            listener.session.wake()
        self.listeners.clear()
        self.on_idle(self)

    # --- worker side -----------------------------------------------------------------------

    def _run(self) -> None:
        code = ErrorCode.INTERNAL
        try:
            outcome = self._produce()
        except ModelBusy as exc:  # refused before any work: the client may retry
            log.warning("generation %s refused: %s", self.token, exc)
            outcome, code = str(exc), ErrorCode.BUSY
        except Exception as exc:
            log.exception("generation %s failed", self.token)
            outcome = f"the model failed: {exc}"
        finally:
            if self.admission is not None:
                self.admission.close()
            self._worker_done.set()
        if outcome is None and not self._stopped.is_set():
            self._to_loop(self._complete)
        elif isinstance(outcome, str):
            self._to_loop(lambda: self._fail(outcome, code))

    def _produce(self) -> str | None:
        request = self.request
        voice = request.voice
        queue = self.source.model_queue
        if self.admission is None and queue is not None:
            self.admission = queue.admit()  # ModelBusy: refused before any work
        for sentence in split_sentences(request.text):
            # A speaker tag holds until the next one, across the sentences we split.
            tag = SPEAKER_TAG.match(sentence)
            if tag is not None:
                voice = tag.group(1)
            chunks = self.source.generate(
                sentence, voice, request.speed, stop=self._stopped, admission=self.admission
            )
            try:
                for data in chunks:
                    if not self._wait_for_gate():
                        return None
                    self._to_loop(partial(self._deliver, data))
            finally:
                chunks.close()  # stops the source's own work (its finally blocks run)
            if self._stopped.is_set():
                return None
        return None

    def _wait_for_gate(self) -> bool:
        while not self._gate.wait(GATE_POLL):
            if self._stopped.is_set():
                return False
        return not self._stopped.is_set()

    def _to_loop(self, callback: Callable[[], None]) -> None:
        try:
            self.runtime.call_soon_threadsafe(callback)
        except Exception:  # the loop is gone (server shutting down): nothing to deliver to
            self._stopped.set()


class GenerationRegistry:
    """Live generations by token, plus a few finished ones kept for late resumes."""

    def __init__(self) -> None:
        self.live: dict[str, Generation] = {}
        self._finished: OrderedDict[str, Generation] = OrderedDict()

    def add(self, generation: Generation) -> None:
        self.live[generation.token] = generation

    def get(self, token: str) -> Generation | None:
        return self.live.get(token) or self._finished.get(token)

    def retire(self, generation: Generation) -> None:
        """Called when a generation has no listeners left or finished."""
        if not generation.finished and not generation.stopped:
            return
        self.live.pop(generation.token, None)
        if generation.finished:
            self._finished[generation.token] = generation
            while len(self._finished) > KEEP_FINISHED:
                self._finished.popitem(last=False)

    def stop_all(self) -> None:
        for generation in list(self.live.values()):
            generation.stop()

    @property
    def running_workers(self) -> int:
        return sum(1 for g in self.live.values() if g.running)
