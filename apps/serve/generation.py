"""Generations: one model run per request, fanned out to listeners, paced by backpressure.

A :class:`Generation` pulls its source's chunks on a worker thread, sentence by sentence (so
the first sentence is heard while the rest is computed), and hands each chunk to the loop. It
produces only while no listener is paused: a listener's ``StreamPaused`` (its connection's
budget, or the client's credit, ran out) closes the gate, ``StreamResumed`` opens it. Work
runs in turns: a turn holds a worker thread while the gate is open and gives it back when the
gate closes, so a paused or abandoned generation keeps its place in the source but no thread
(a client that stops reading cannot starve the others of workers). When the last listener
cancels, the source is closed at once; when it merely disconnects, the generation is held for
a grace period in which a client may resume, and then stopped. A source that computes ahead
on its own thread (Dia finishes its current text batch) stops at its next chunk or when the
grace ends.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from diaproto.apps.serve.model_queue import Admission, ModelBusy
from diaproto.apps.serve.publication import Elsewhere, Publication
from diaproto.apps.serve.requests import StreamRequest
from diaproto.apps.serve.sources import Source
from diaproto.apps.serve.text import split_sentences
from diaproto.journal import Ending, Journal
from diaproto.replay import ReplayBuffer
from diaproto.runtime import Cancellable, Runtime
from diaproto.server.framing import Payload
from diaproto.wire import ErrorCode

log = logging.getLogger("diaproto.serve")

SPEAKER_TAG = re.compile(r"\s*\[(S[12])\]")
REPLAY_MESSAGES = 4096  # about 47 s of audio at 86 chunks a second
REPLAY_BYTES = 8 << 20
KEEP_FINISHED = 64  # finished generations kept for late resumes


def new_epoch() -> str:
    """A generation's epoch: random, so that a resume names the history it had."""
    return secrets.token_hex(4)


@dataclass(frozen=True)
class GenerationEnded:
    """What a generation did, for the metrics: handed to its ``on_end`` once, on the loop,
    when its source is closed. Times are on the runtime's clock."""

    outcome: str  # "completed", "failed", "refused" (the model was busy) or "stopped"
    model: str  # the source's name
    seconds: float  # from start() to the source closed, pauses included
    compute_seconds: float  # spent waiting on the source for chunks (pauses not included)
    audio_bytes: int  # PCM s16le the source produced


class Waker(Protocol):
    def wake(self) -> None: ...


class Listener(Protocol):
    """One consumer of a generation: a wire stream, an SSE response, an HTTP body..."""

    paused: bool

    @property
    def session(self) -> Waker:
        """Where to signal that output was queued (a :class:`diaproto.runtime.Session`)."""
        ...

    def chunk(self, data: bytes, now: float) -> None: ...
    def end(self, now: float) -> None: ...
    def fail(self, message: str, now: float, code: str = ErrorCode.INTERNAL) -> None: ...


class Broadcast(Protocol):
    """What listeners attach to: a :class:`Generation` run here, or one run by another
    worker and heard through the shared journal (:mod:`.mirror`)."""

    token: str
    epoch: str
    replay: ReplayBuffer[Payload]
    listeners: list[Listener]
    finished: bool
    # Opened with credit: a WebSocket resume of it stays credit-based, from 0 (protocol §10).
    credit_based: bool
    failed: str | None
    failed_code: str

    owner: str

    @property
    def stopped(self) -> bool: ...
    @property
    def lasting(self) -> bool:
        """Whether its outcome is kept for late resumes once it is over."""
        ...

    def attach(self, listener: Listener) -> None: ...
    def detach(self, listener: Listener, *, cancelled: bool, grace: float) -> None: ...
    def update_gate(self) -> None: ...
    def stop(self, reason: str = ...) -> None: ...


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
    # model is a 503 before anything is sent), else by the first turn; closed when it ends.
    admission: Admission | None = None
    # Who asked (the peer's host), for the per-peer limit; "" when nobody is counted.
    owner: str = ""
    # Names this run's history: SSE event ids carry it (``<epoch>.<seq>``), so a reconnect
    # from an earlier run under the same token is told its history is gone.
    epoch: str = field(default_factory=new_epoch)
    # A shared journal (``serve --cluster``): the chunks are written to it, and listeners on
    # other workers count for the gate and the grace as this worker's own do.
    journal: Journal | None = None
    lease: int = 0  # what its records carry (a model worker's job: its delivery count)
    credit_based: bool = False
    publication: Publication | None = field(default=None, init=False)
    chunks: int = 0
    # Told how it went once its source is closed (the registry it is added to sets it).
    on_end: Callable[[GenerationEnded], None] | None = None
    _started_at: float | None = None
    _compute_seconds: float = 0.0  # worker side, like _audio_bytes
    _audio_bytes: int = 0
    _gate: threading.Event = field(default_factory=threading.Event)
    _stopped: threading.Event = field(default_factory=threading.Event)
    _closed: threading.Event = field(default_factory=threading.Event)
    _grace_timer: Cancellable | None = None
    _grace: float = 0.0  # the last grace a detaching listener was given
    # Loop side: a turn is on a worker thread (at most one at a time).
    _turn_running: bool = False
    # Worker side (one turn at a time): the model's output and the chunk in hand.
    _output: Generator[bytes, None, None] | None = None
    _in_hand: bytes | None = None

    def __post_init__(self) -> None:
        self.replay = ReplayBuffer(0, max_messages=REPLAY_MESSAGES, max_bytes=REPLAY_BYTES)
        self._gate.set()

    # --- loop side -------------------------------------------------------------------------

    def start(self) -> None:
        if self.journal is not None:
            self.publication = Publication(
                self.journal,
                self.token,
                self.epoch,
                self.runtime,
                self._elsewhere_changed,
                lease=self.lease,
                credit_based=self.credit_based,
            )
        self._started_at = self.runtime.now()
        self._output = self._all_chunks()
        self._start_turn()

    @property
    def running(self) -> bool:
        """True until the source is closed (finished, failed or stopped); a paused
        generation is running but holds no worker thread."""
        return not self._closed.is_set()

    @property
    def producing(self) -> bool:
        """True while a turn holds a worker thread."""
        return self._turn_running

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    @property
    def lasting(self) -> bool:
        return True

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
        self._grace = grace
        if self.listeners or self.finished or self._heard_elsewhere():
            self.update_gate()
            if not self.listeners:
                self.on_idle(self)
            return
        if cancelled or grace <= 0:
            self.stop()
        else:
            self._hold()

    def update_gate(self) -> None:
        elsewhere = self._elsewhere()
        heard = bool(self.listeners) or elsewhere.listeners > 0
        paused = elsewhere.paused or any(listener.paused for listener in self.listeners)
        if heard and not paused:
            self._gate.set()
            self._start_turn()
        else:
            self._gate.clear()

    def expect_listeners(self, grace: float) -> None:
        """For a generation all of whose listeners are on other workers (a model worker's
        job): stop it if none is heard of within ``grace``, or after the last one left."""
        self._grace = grace
        if not self.listeners and not self._heard_elsewhere() and self._grace_timer is None:
            self._grace_timer = self.runtime.call_later(grace, self._grace_over)

    def _elsewhere(self) -> Elsewhere:
        if self.publication is None:
            return Elsewhere()
        return self.publication.elsewhere(self.runtime.now())

    def _heard_elsewhere(self) -> bool:
        return self._elsewhere().listeners > 0

    def _hold(self) -> None:
        """No listener anywhere: hold the work for the grace, then stop."""
        self._gate.clear()  # no compute for a listener that left
        if self._grace_timer is None:
            self._grace_timer = self.runtime.call_later(self._grace, self._grace_over)

    def _elsewhere_changed(self) -> None:
        """Another worker's listeners came, went, paused or resumed."""
        if self.finished or self.stopped:
            return
        if self._heard_elsewhere() and self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        if not self.listeners and not self._heard_elsewhere():
            self._hold()
        else:
            self.update_gate()

    def stop(self, reason: str = "no listener was left") -> None:
        """Stop generating for good: a running turn ends at its next chunk; a held
        generation's source is closed on a worker (closing may wait for the model).
        ``reason`` is what listeners on other workers are told."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._gate.set()
        if self.publication is not None and not self.finished:
            # What was written stands; a listener elsewhere is told nothing follows.
            self.publication.end(
                Ending(
                    self.replay.last_seq,
                    f"the generation was stopped: {reason}",
                    ErrorCode.GENERATION_LOST,
                )
            )
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        if not self._turn_running and self._output is not None and not self._closed.is_set():
            self._turn_running = True
            self.runtime.start_worker(self._turn, name=f"generation-{self.token}")
        self.on_idle(self)

    def _start_turn(self) -> None:
        """Give the generation a worker thread, unless it has one or should not run."""
        if (
            self._turn_running
            or self._output is None
            or self._closed.is_set()
            or not self._gate.is_set()
        ):
            return
        self._turn_running = True
        self.runtime.start_worker(self._turn, name=f"generation-{self.token}")

    def _turn_over(self) -> None:
        self._turn_running = False
        if self._closed.is_set():
            self._report_end()
        elif self._stopped.is_set():
            self._start_turn()  # stopped while the turn was ending: close the source
        elif self._gate.is_set():
            self._start_turn()  # resumed while the turn was ending

    def _report_end(self) -> None:
        on_end, self.on_end = self.on_end, None  # once
        if on_end is None or self._started_at is None:
            return
        if self.failed is not None:
            outcome = "refused" if self.failed_code == ErrorCode.BUSY else "failed"
        else:
            outcome = "completed" if self.finished else "stopped"
        seconds = self.runtime.now() - self._started_at
        on_end(
            GenerationEnded(
                outcome, self.source.name, seconds, self._compute_seconds, self._audio_bytes
            )
        )

    def _grace_over(self) -> None:
        self._grace_timer = None
        if not self.listeners and not self._heard_elsewhere():
            self.stop()

    def _deliver(self, data: bytes) -> None:
        if self._stopped.is_set():
            return
        seq = self.replay.last_seq + 1
        self.replay.append(seq, data, len(data))  # before sending: listeners number from it
        self.chunks += 1
        now = self.runtime.now()
        if self.publication is not None:
            self.publication.frame(data, now)
        self._tell_listeners(lambda listener: listener.chunk(data, now), now)

    def _complete(self) -> None:
        self.finished = True
        if self.publication is not None:
            self.publication.end(Ending(self.replay.last_seq))
        now = self.runtime.now()
        self._tell_listeners(lambda listener: listener.end(now), now)
        self.listeners.clear()
        self.on_idle(self)

    def _fail(self, message: str, code: str) -> None:
        self.finished = True
        self.failed = message
        self.failed_code = code
        if self.publication is not None:
            self.publication.end(Ending(self.replay.last_seq, message, code))
        now = self.runtime.now()
        self._tell_listeners(lambda listener: listener.fail(message, now, code), now)
        self.listeners.clear()
        self.on_idle(self)

    def _tell_listeners(self, tell: Callable[[Listener], None], now: float) -> None:
        """Tell every listener; one that raises (its encoder, its connection) fails alone,
        logged, and the others and this generation go on."""
        for listener in list(self.listeners):
            try:
                tell(listener)
            except Exception:
                log.exception("generation %s: a listener failed", self.token)
                self._drop_broken(listener, now)
            listener.session.wake()

    def _drop_broken(self, listener: Listener, now: float) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)
        try:
            listener.fail("internal error", now, ErrorCode.INTERNAL)
        except Exception:  # left to its connection's timeouts
            log.exception("generation %s: failing a broken listener failed", self.token)

    # --- worker side -----------------------------------------------------------------------

    def _turn(self) -> None:
        """Produce while the gate is open, then give the thread back: a paused or held
        generation keeps its place in its source, not a worker thread."""
        outcome: str | None = None
        code = ErrorCode.INTERNAL
        ended = False
        try:
            ended = self._produce()
        except ModelBusy as exc:  # refused before any work: the client may retry
            log.warning("generation %s refused: %s", self.token, exc)
            outcome, code, ended = str(exc), ErrorCode.BUSY, True
        except Exception as exc:
            log.exception("generation %s failed", self.token)
            outcome, ended = f"the model failed: {exc}", True
        if ended:
            self._close_source()
            if outcome is None and not self._stopped.is_set():
                self._to_loop(self._complete)
            elif outcome is not None:
                self._to_loop(partial(self._fail, outcome, code))
        self._to_loop(self._turn_over)

    def _produce(self) -> bool:
        """Deliver chunks until the gate closes (False) or the output ends or is
        stopped (True)."""
        assert self._output is not None
        while not self._stopped.is_set():
            if not self._gate.is_set():
                return False
            if self._in_hand is None:
                began = self.runtime.now()
                self._in_hand = next(self._output, None)
                self._compute_seconds += self.runtime.now() - began
                if self._in_hand is None:
                    return True
                self._audio_bytes += len(self._in_hand)
                continue  # computing it took a while: look at the gate again
            data, self._in_hand = self._in_hand, None
            self._to_loop(partial(self._deliver, data))
        return True

    def _all_chunks(self) -> Generator[bytes, None, None]:
        request = self.request
        voice = request.voice
        queue = self.source.model_queue
        if self.admission is None and queue is not None:
            self.admission = queue.admit()  # ModelBusy: refused before any work
        # A source asks for the whole text with ``whole_text = True`` (a prompt to a chat
        # model is one turn); otherwise it speaks one sentence per call, each as it comes.
        whole = getattr(self.source, "whole_text", False) is True
        for sentence in [request.text] if whole else split_sentences(request.text):
            # A speaker tag holds until the next one, across the sentences we split.
            tag = SPEAKER_TAG.match(sentence)
            if tag is not None:
                voice = tag.group(1)
            chunks = self.source.generate(
                sentence, voice, request.speed, stop=self._stopped, admission=self.admission
            )
            try:
                yield from chunks
            finally:
                chunks.close()  # stops the source's own work (its finally blocks run)
            if self._stopped.is_set():
                return

    def _close_source(self) -> None:
        try:
            if self._output is not None:
                self._output.close()
        except Exception:
            log.exception("generation %s: closing the source failed", self.token)
        finally:
            if self.admission is not None:
                self.admission.close()
            self._closed.set()

    def _to_loop(self, callback: Callable[[], None]) -> None:
        try:
            self.runtime.call_soon_threadsafe(callback)
        except Exception:  # the loop is gone (server shutting down): nothing to deliver to
            log.debug("generation %s: the loop is gone", self.token, exc_info=True)
            self._stopped.set()


class GenerationRegistry:
    """Live generations by token (run here, and mirrors of those run elsewhere), plus a few
    finished ones kept for late resumes."""

    def __init__(
        self,
        keep_finished: int = KEEP_FINISHED,
        *,
        on_ended: Callable[[GenerationEnded], None] | None = None,
    ) -> None:
        # Given each generation added here once it ends (the service's metrics).
        self.on_ended = on_ended
        self.live: dict[str, Generation] = {}
        self.mirrors: dict[str, Broadcast] = {}
        self._finished: OrderedDict[str, Broadcast] = OrderedDict()
        self.keep_finished = keep_finished

    def add(self, generation: Generation) -> None:
        if generation.on_end is None:
            generation.on_end = self.on_ended
        self.live[generation.token] = generation

    def add_mirror(self, mirror: Broadcast) -> None:
        self.mirrors[mirror.token] = mirror

    def get(self, token: str) -> Broadcast | None:
        return self.live.get(token) or self.mirrors.get(token) or self._finished.get(token)

    def retire(self, generation: Broadcast) -> None:
        """Called when a generation has no listeners left or finished."""
        if not generation.finished and not generation.stopped:
            return
        for table in (self.live, self.mirrors):
            if table.get(generation.token) is generation:
                del table[generation.token]
        if generation.finished and generation.lasting:
            self._finished[generation.token] = generation
            while len(self._finished) > self.keep_finished:
                self._finished.popitem(last=False)

    def stop_all(self) -> None:
        for generation in [*self.live.values(), *self.mirrors.values()]:
            generation.stop("the worker that ran it is shutting down")

    def owned_by(self, owner: str) -> int:
        """Live generations (running, or held for a resume, here or as a job for a model
        worker) started for ``owner``."""
        return sum(1 for g in [*self.live.values(), *self.mirrors.values()] if g.owner == owner)

    @property
    def running_workers(self) -> int:
        return sum(1 for g in self.live.values() if g.running)
