"""The outbound streams of a server connection: opening, sending, ending, failing and
resuming streams on the scheduler, over a WebSocket, an SSE stream or a streamed body."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from diaproto.errors import LocalProtocolError, ReplayGap
from diaproto.replay import ReplayBuffer
from diaproto.scheduler import Policy, Priority, Scheduler, StreamOptions
from diaproto.server.core import CONTROL_STREAM, ConnectionCore
from diaproto.server.framing import Payload, payload_size
from diaproto.server.state import State
from diaproto.sse import SseEvent
from diaproto.wire import (
    MAX_ID,
    ErrorCode,
    StreamEnd,
    StreamError,
    StreamOpened,
    encode_message,
)


class OutboundStreams(ConnectionCore):
    """The application's side of the scheduler; framing happens in ``data_to_send``."""

    __slots__ = ()  # in ConnectionCore

    def open_stream(
        self,
        stream_id: int,
        now: float,
        *,
        priority: Priority = Priority.STREAM,
        policy: Policy = Policy.PAUSE,
        limit: int | None = None,
        credit: int | None = None,
        pace: float | None = None,
        lead: int | None = None,
        burst: int | None = None,
        grace: float = 5.0,
        replay: ReplayBuffer[Payload] | None = None,
        record: bool = True,
        token: str | None = None,
    ) -> None:
        """Open an outbound stream, scheduled as :class:`~diaproto.scheduler.StreamOptions`
        says of each option (the same names and defaults). With the wire protocol this also
        sends ``open``, carrying ``token``."""
        self._expect_output()
        if not 0 <= stream_id <= MAX_ID:
            raise LocalProtocolError("stream ids are integers in 0..2**32-1")
        options = StreamOptions(
            priority=priority,
            policy=policy,
            limit=limit,
            credit=credit,
            pace=pace,
            lead=lead,
            burst=burst,
            grace=grace,
            replay=replay,
            record=record,
        )
        self._scheduler.open_stream(stream_id, now, options)
        if self._wire:
            self._control(encode_message(StreamOpened(stream_id, token)), now)

    def send(
        self, stream_id: int, payload: Payload, now: float, *, key: Hashable | None = None
    ) -> int | None:
        """Queue one message on a stream; returns its sequence number (None: dropped).

        WebSocket: bytes are data chunks (wire protocol) or binary messages, str is a text
        message. SSE: bytes are wire ``data`` events, str a plain event, SseEvent as is.
        Streamed body: bytes (or str, as UTF-8).
        """
        if not self._output_open:
            self._expect_output()  # raises
        if isinstance(payload, bytes):  # the common case first: a data chunk
            if (
                self._passed is None
                and not self._handed_out
                and key is None
                and self._framer is not None
            ):
                # An idle connection: the scheduler may let it through, to be framed by the
                # next data_to_send with no queue and no batch.
                item = self._scheduler.pass_through(stream_id, payload, len(payload), now)
                if item is not None:
                    self._passed = item
                    return item.seq
            return self._scheduler.enqueue(stream_id, payload, len(payload), now, key=key)
        size = self._payload_size(payload)
        return self._scheduler.enqueue(stream_id, payload, size, now, key=key)

    def send_many(self, stream_id: int, payloads: Sequence[Payload], now: float) -> int | None:
        """Queue several messages on a stream, as ``send`` would one by one, for less per
        message (one state check, and on a PAUSE stream one budget and pause update for the
        list). Returns the last one's sequence number (None: dropped, or no payloads).

        Every payload is checked before any is queued.
        """
        if not self._output_open:
            self._expect_output()  # raises
        sizes = [len(p) if isinstance(p, bytes) else self._payload_size(p) for p in payloads]
        return self._scheduler.enqueue_many(stream_id, payloads, sizes, now)

    def _payload_size(self, payload: Payload) -> int:
        """The size of a payload that is not a data chunk, refused where it does not fit."""
        if isinstance(payload, SseEvent) and not self._sse:
            raise LocalProtocolError("an SseEvent can only be sent on an SSE response")
        if self._wire:
            raise LocalProtocolError("with diaproto.v1, send() takes data chunks (bytes)")
        return payload_size(payload)

    def end_stream(self, stream_id: int, now: float) -> None:
        """No more messages on this stream; the wire protocol's ``end`` follows its data."""
        self._expect_output()
        last_seq = self._scheduler.last_seq(stream_id)
        if self._wire:
            end = encode_message(StreamEnd(stream_id, last_seq))
            self._scheduler.enqueue(stream_id, end, len(end), now)
        elif self._sse:
            data = encode_message(StreamEnd(stream_id, last_seq))
            event = SseEvent(data=data, event="end")
            self._scheduler.enqueue(stream_id, event, payload_size(event), now)
        self._scheduler.finish_stream(stream_id)

    def fail_stream(self, stream_id: int | None, code: str, message: str, now: float) -> None:
        """Drop what the stream still has queued and report an error ahead of other data."""
        self._expect_output()
        if stream_id is not None:
            self._scheduler.discard_stream(stream_id)
        text = encode_message(StreamError(stream_id, code, message))
        if self._sse:
            event = SseEvent(data=text, event="error")
            self._scheduler.enqueue(CONTROL_STREAM, event, payload_size(event), now)
        elif self._ws is not None:
            self._control(text, now)

    def resume_stream(self, stream_id: int, after: int, now: float) -> bool:
        """Re-send what the client missed after ``after`` (see :meth:`Scheduler.resume`).

        On a replay gap the stream fails with ``replay_gap`` and this returns False.
        """
        self._expect_output()
        if self._passed is not None and self._passed.stream_id == stream_id:
            self._passed = None  # among the replayed messages if after it, else the client's
        try:
            self._scheduler.resume(stream_id, after, now)
        except ReplayGap as gap:
            self.fail_stream(stream_id, ErrorCode.REPLAY_GAP, str(gap), now)
            return False
        return True

    def end_response(self, now: float) -> None:
        """End an SSE or streamed response once everything queued has been sent."""
        if self.state is not State.STREAMING:
            raise LocalProtocolError("no streamed response is open")
        for stream_id in self._scheduler.stream_ids:
            self._scheduler.finish_stream(stream_id)
        self._ending = True

    @property
    def scheduler(self) -> Scheduler[Payload]:
        """The outbound scheduler (metrics, pause state, credit of each stream)."""
        return self._scheduler
