"""The ways a generation's audio leaves the server: one listener class per response kind."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from diaproto.apps.serve.encoding import SpeechEncoder
from diaproto.errors import LocalProtocolError
from diaproto.runtime import Session
from diaproto.sse import SseEvent
from diaproto.wire import ErrorCode


@dataclass(eq=False)
class StreamListener:
    """A diaproto stream: wire-protocol chunks over WebSocket, or wire events over SSE.

    ``ends_response`` closes the SSE response after the stream's end (one stream per SSE
    response); a WebSocket carries many streams and stays open.
    """

    session: Session
    stream_id: int
    ends_response: bool = False
    paused: bool = False

    def chunk(self, data: bytes, now: float) -> None:
        if not self.session.conn.scheduler.has_stream(self.stream_id):
            return  # the stream ended (cancel, close) while this chunk was on its way
        try:
            self.session.conn.send(self.stream_id, data, now)
        except LocalProtocolError:
            # Past the hard budget although the producer pauses: this consumer is gone.
            self.fail("the consumer fell too far behind", now, ErrorCode.SLOW_CONSUMER)

    def end(self, now: float) -> None:
        if self.session.conn.scheduler.has_stream(self.stream_id):
            self.session.conn.end_stream(self.stream_id, now)
        self._end_response(now)

    def fail(self, message: str, now: float, code: str = ErrorCode.INTERNAL) -> None:
        if self.session.conn.scheduler.has_stream(self.stream_id):
            self.session.conn.fail_stream(self.stream_id, code, message, now)
        self._end_response(now)

    def _end_response(self, now: float) -> None:
        conn = self.session.conn
        if self.ends_response and conn.state.value == "streaming":
            conn.end_response(now)


@dataclass(eq=False)
class SpeechBodyListener(StreamListener):
    """OpenAI's speech endpoint, ``stream_format=audio``: a chunked body in the response's
    format, encoded as the audio comes."""

    encoder: SpeechEncoder = field(default_factory=lambda: SpeechEncoder("pcm"))

    def __post_init__(self) -> None:
        self.ends_response = True

    def chunk(self, data: bytes, now: float) -> None:
        if not self.session.conn.scheduler.has_stream(self.stream_id):
            self.encoder.close()  # the client left: nothing more to encode
            return
        encoded = self.encoder.encode(data)
        if encoded:  # an encoder may hold a chunk until it has a whole packet
            super().chunk(encoded, now)

    def end(self, now: float) -> None:
        conn = self.session.conn
        if not conn.scheduler.has_stream(self.stream_id):
            self.encoder.close()
            self._end_response(now)
            return
        rest = self.encoder.finish()
        if rest:
            try:
                conn.send(self.stream_id, rest, now)
            except LocalProtocolError:
                self.fail("the consumer fell too far behind", now, ErrorCode.SLOW_CONSUMER)
                return
        conn.scheduler.finish_stream(self.stream_id)
        self._end_response(now)

    def fail(self, message: str, now: float, code: str = ErrorCode.INTERNAL) -> None:
        # Headers are out: the only honest signal left is an aborted body (no final chunk).
        self.encoder.close()
        self.session.conn.close(now)


@dataclass(eq=False)
class SpeechSseListener(StreamListener):
    """OpenAI's speech endpoint, ``stream_format=sse``: speech.audio.delta / .done events,
    each delta's audio in the response's format."""

    input_chars: int = 0
    audio_bytes: int = 0
    encoder: SpeechEncoder = field(default_factory=lambda: SpeechEncoder("pcm"))

    def __post_init__(self) -> None:
        self.ends_response = True

    def chunk(self, data: bytes, now: float) -> None:
        if not self.session.conn.scheduler.has_stream(self.stream_id):
            self.encoder.close()  # the client left: nothing more to encode
            return
        self.audio_bytes += len(data)
        self._delta(self.encoder.encode(data), now)

    def _delta(self, audio: bytes, now: float) -> bool:
        """Send one delta; False when the consumer fell too far behind (and failed)."""
        if not audio:
            return True
        delta = {"type": "speech.audio.delta", "audio": base64.b64encode(audio).decode("ascii")}
        try:
            self.session.conn.send(self.stream_id, SseEvent(json.dumps(delta)), now)
        except LocalProtocolError:
            self.fail("the consumer fell too far behind", now, ErrorCode.SLOW_CONSUMER)
            return False
        return True

    def end(self, now: float) -> None:
        # OpenAI bills audio output in tokens; we report a plain, documented proxy.
        output_tokens = self.audio_bytes // 1024
        done = {
            "type": "speech.audio.done",
            "usage": {
                "input_tokens": self.input_chars,
                "output_tokens": output_tokens,
                "total_tokens": self.input_chars + output_tokens,
            },
        }
        conn = self.session.conn
        if not conn.scheduler.has_stream(self.stream_id):
            self.encoder.close()
            self._end_response(now)
            return
        if not self._delta(self.encoder.finish(), now):
            return  # failed: its error event is the stream's last
        try:
            conn.send(self.stream_id, SseEvent(json.dumps(done)), now)
        except LocalProtocolError:
            self.fail("the consumer fell too far behind", now, ErrorCode.SLOW_CONSUMER)
            return
        conn.scheduler.finish_stream(self.stream_id)
        self._end_response(now)

    def fail(self, message: str, now: float, code: str = ErrorCode.INTERNAL) -> None:
        self.encoder.close()
        error = {"type": "error", "error": {"message": message, "code": code}}
        conn = self.session.conn
        if conn.scheduler.has_stream(self.stream_id):
            conn.scheduler.discard_stream(self.stream_id)
            conn.open_stream(self.stream_id, now)
            conn.send(self.stream_id, SseEvent(json.dumps(error), event="error"), now)
        self._end_response(now)
