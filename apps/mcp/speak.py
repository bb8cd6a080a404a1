"""One ``speak`` call: a listener of a generation that reports through an MCP session.

Each chunk of audio becomes a progress report (seconds generated so far; the channel keeps
only the newest unsent one) and, when the call opted in, a partial result carrying the
audio (batched to about 0.2 s per notification). The final result is the whole utterance as
a WAV file: inline as AudioContent up to ``inline_limit`` bytes of WAV, beyond that a resource
link to ``<link_base>/mcp/audio/<id>.wav``, which the service keeps for a while. The limit
keeps every message well under 1 MiB, the most one SSE event may carry for the official
Python SDK (and one WebSocket message for common clients).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from diaproto.apps.serve.audio import SAMPLE_RATE, duration, wav_header

if TYPE_CHECKING:
    from diaproto.apps.serve.generation import Generation, Waker
    from diaproto.mcp import McpSession, RequestId

INLINE_AUDIO_LIMIT = 384 * 1024  # bytes of WAV carried in the result itself (a 512 KiB event)
PARTIAL_BYTES = 17_640  # 0.2 s of audio per partial result
PCM_MIME = f"audio/pcm;rate={SAMPLE_RATE};channels=1;encoding=s16le"


class CallOwner(Protocol):
    """Who the call reports to (an MCP peer): its session, and the way out."""

    @property
    def session(self) -> McpSession: ...

    def wake(self) -> None: ...

    def pump(self, now: float) -> None: ...

    def keep_audio(self, wav: bytes) -> str:
        """Store a finished clip; returns the URL it can be fetched from."""
        ...


@dataclass(eq=False)
class SpeakCall:
    owner: CallOwner
    request_id: RequestId
    text: str
    voice: str
    paused: bool = False
    generation: Generation | None = None
    inline_limit: int = INLINE_AUDIO_LIMIT
    link_base: str = ""  # "http://host:port" for an absolute link; "" keeps it relative
    pcm: bytearray = field(default_factory=bytearray)
    _unsent: bytearray = field(default_factory=bytearray)

    @property
    def session(self) -> Waker:
        return self.owner

    def chunk(self, data: bytes, now: float) -> None:
        self.pcm += data
        session = self.owner.session
        session.progress(
            self.request_id, round(duration(len(self.pcm)), 3), message="seconds of audio"
        )
        self._unsent += data
        if len(self._unsent) >= PARTIAL_BYTES:
            self._flush()
        self.owner.pump(now)

    def end(self, now: float) -> None:
        self._flush()
        wav = wav_header(len(self.pcm)) + bytes(self.pcm)
        seconds = duration(len(self.pcm))
        summary = f"Spoke {len(self.text)} characters as {seconds:.2f} s of audio ({self.voice})."
        content: list[dict[str, Any]]
        if len(wav) <= self.inline_limit:
            audio = base64.b64encode(wav).decode("ascii")
            content = [{"type": "audio", "data": audio, "mimeType": "audio/wav"}]
        else:
            content = [
                {
                    "type": "resource_link",
                    "uri": self.link_base + self.owner.keep_audio(wav),
                    "name": "speech.wav",
                    "mimeType": "audio/wav",
                    "size": len(wav),
                }
            ]
        content.append({"type": "text", "text": summary})
        result = {
            "content": content,
            "structuredContent": {"seconds": round(seconds, 3), "voice": self.voice},
            "isError": False,
        }
        self.owner.session.respond(self.request_id, result)
        self.owner.pump(now)

    def fail(self, message: str, now: float, code: str = "internal") -> None:
        result = {"content": [{"type": "text", "text": message}], "isError": True}
        self.owner.session.respond(self.request_id, result)
        self.owner.pump(now)

    def _flush(self) -> None:
        if not self._unsent:
            return
        audio = base64.b64encode(self._unsent).decode("ascii")
        self._unsent.clear()
        self.owner.session.partial_result(
            self.request_id, [{"type": "audio", "data": audio, "mimeType": PCM_MIME}]
        )
