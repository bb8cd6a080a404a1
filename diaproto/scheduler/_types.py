"""The scheduler's vocabulary: priority classes, overflow policies, a queued message, the
options a stream is opened with, and the record the scheduler keeps for each open stream.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Generic, TypeVar

from diaproto.errors import LocalProtocolError
from diaproto.metrics import StreamMetrics
from diaproto.replay import ReplayBuffer

T = TypeVar("T")


class Priority(IntEnum):
    """Classes in strict order: a lower value always goes first."""

    CONTROL = 0  # handshakes, closes, errors, cancels, credit, pings, MCP responses
    INTERACTIVE = 1
    STREAM = 2  # audio, tokens
    BACKGROUND = 3  # logs, telemetry


LINGERING_CLASSES = (Priority.STREAM, Priority.BACKGROUND)


class Policy(Enum):
    """What a stream does when it is over its share of the budget."""

    PAUSE = "pause"  # lossless: the producer is told to stop, then to go on
    DROP_OLDEST = "drop_oldest"  # the oldest queued messages of the stream are dropped
    LATEST = "latest"  # one message per key: a newer one replaces the queued older one
    DISCONNECT = "disconnect"  # after a grace period the consumer is declared too slow


@dataclass(slots=True, eq=False)
class Outgoing(Generic[T]):
    """One queued message."""

    stream_id: int
    seq: int
    payload: T
    size: int
    key: Hashable | None = None


@dataclass(frozen=True, slots=True)
class StreamOptions(Generic[T]):
    """How a stream is scheduled, fixed when it is opened; refused here if out of range.

    - ``priority``: its class (strict order between classes, fair shares within one).
    - ``policy``: what happens when the stream is over its share of the budget.
    - ``limit``: its share, in charged bytes (each queued message's size plus the
      scheduler's per-message overhead); ``None`` is the connection's high watermark
      (which a config may set to 0: the stream is then over its share with anything queued).
    - ``credit``: bytes the consumer grants up front; the stream sends only while its credit
      is positive. ``None``: not credit-based.
    - ``pace``, ``lead`` and ``burst``: the stream sends at most ``pace`` bytes a second
      after a first ``lead`` bytes (the clock's allowance, refilled as ``take`` is called);
      the clock saves up at most ``burst`` bytes (default: the lead), so a smaller burst
      spreads what credit lets through in bunches evenly. For a consumer that cannot grant
      credit (SSE), or one that plays at that pace and wants its data evenly spaced; with
      credit, both bound the stream. ``None``: not paced.
    - ``grace``: seconds a DISCONNECT stream may stay over its share before it is declared
      too slow.
    - ``replay``: a buffer that records every message, so a consumer can resume; sequence
      numbers continue after its last one.
    - ``record``: ``False`` shares a buffer that its owner fills (one generation fanned out
      to several listeners): the stream numbers its messages from the buffer and resumes
      from it, but appends nothing, so the owner appends each message before sending it.
    """

    priority: Priority = Priority.STREAM
    policy: Policy = Policy.PAUSE
    limit: int | None = None
    credit: int | None = None
    pace: float | None = None
    lead: int | None = None
    burst: int | None = None
    grace: float = 5.0
    replay: ReplayBuffer[T] | None = None
    record: bool = True

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit <= 0:
            raise LocalProtocolError("a stream's limit must be positive")
        if (self.pace is None) != (self.lead is None) or (
            self.pace is not None and not (self.pace > 0 and self.lead and self.lead > 0)
        ):
            raise LocalProtocolError("a paced stream needs a positive pace and lead")
        if self.burst is not None and (self.pace is None or self.burst <= 0):
            raise LocalProtocolError("a burst is a positive bound of a paced stream")
        object.__setattr__(self, "priority", Priority(self.priority))


@dataclass(slots=True, eq=False)
class StreamRecord(Generic[T]):
    """What the scheduler knows of one open stream: its queue, its place in the fair-share
    ring (:mod:`~diaproto.scheduler.fairness`) and its budget state
    (:mod:`~diaproto.scheduler.budget`). The options it needs per message are copied out of
    :attr:`options`, resolved, so the hot path reads one attribute each."""

    stream_id: int
    options: StreamOptions[T]
    policy: Policy
    limit: int  # the resolved share: options.limit, or the high watermark
    resume_at: int  # a paused stream resumes once its queue is at most this (see budget)
    recorder: ReplayBuffer[T] | None  # options.replay when the stream records into it
    lingering: bool  # in a class that lingers for company (priority in LINGERING_CLASSES)
    credit: int | None  # what is left of the consumer's credit
    metrics: StreamMetrics
    next_seq: int
    queue: deque[Outgoing[T]] = field(default_factory=deque)
    queued_bytes: int = 0  # the sizes of the messages in queue (the budget charges more)
    latest: dict[Hashable, Outgoing[T]] = field(default_factory=dict)
    finishing: bool = False
    # fairness
    deficit: int = 0
    needs_quantum: bool = True
    active: bool = False
    # budget
    paused: bool = False
    over_since: float | None = None
    slow_reported: bool = False
    # pacing (options.pace): what the clock allows, as granted up to paced_at; None: unpaced
    allowance: int | None = None
    paced_at: float = 0.0

    @property
    def priority(self) -> Priority:
        return self.options.priority

    def eligible(self) -> bool:
        """It has something queued, and the credit and the pace allow it."""
        return (
            bool(self.queue)
            and (self.credit is None or self.credit > 0)
            and (self.allowance is None or self.allowance > 0)
        )
