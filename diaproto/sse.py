"""Server-Sent Events: an encoder for servers and a WHATWG-conformant parser for clients."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from diaproto.errors import LocalProtocolError, RemoteProtocolError
from diaproto.events import Headers, SseMessage

#: Response headers of every SSE stream: the type, and what stops proxies from buffering.
SSE_RESPONSE_HEADERS: Headers = (
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-store"),
    ("x-accel-buffering", "no"),
)


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One event to send. ``data`` may hold newlines: it becomes several ``data:`` lines."""

    data: str = ""
    event: str | None = None
    id: str | None = None
    retry: int | None = None  # milliseconds

    def __post_init__(self) -> None:
        for name, value in (("event", self.event), ("id", self.id)):
            if value is not None and ("\n" in value or "\r" in value):
                raise LocalProtocolError(f"SSE {name} cannot contain a line break")
        if self.id is not None and "\0" in self.id:
            raise LocalProtocolError("an SSE id cannot contain NUL (clients ignore it)")
        if self.retry is not None and self.retry < 0:
            raise LocalProtocolError("retry must not be negative")

    def encode(self) -> bytes:
        lines: list[str] = []
        if self.id is not None:
            lines.append(f"id: {self.id}")
        if self.event is not None:
            lines.append(f"event: {self.event}")
        if self.retry is not None:
            lines.append(f"retry: {self.retry}")
        # Any of CR, LF or CRLF ends a line for the client, so split on all three.
        lines.extend(f"data: {line}" for line in self.data.replace("\r\n", "\n")
                     .replace("\r", "\n").split("\n"))
        return ("\n".join(lines) + "\n\n").encode()


def encode_comment(text: str = "") -> bytes:
    """A comment line: ignored by clients, so it keeps an idle stream (and proxies) alive."""
    if "\n" in text or "\r" in text:
        raise LocalProtocolError("an SSE comment cannot contain a line break")
    return f": {text}\n\n".encode() if text else b":\n\n"


def encode_retry(milliseconds: int) -> bytes:
    """A block that only sets the client's reconnection delay."""
    if milliseconds < 0:
        raise LocalProtocolError("retry must not be negative")
    return f"retry: {milliseconds}\n\n".encode()


class SseParser:
    """Turns a byte stream into :class:`SseMessage` events, split anywhere.

    Follows the WHATWG "event stream interpretation": a leading BOM is skipped, lines end
    in CR, LF or CRLF, ``id`` containing NUL is ignored, ``retry`` must be all digits, an
    event with no data is not dispatched. ``last_event_id`` is what a reconnect sends as
    ``Last-Event-ID``. A line longer than ``max_line`` is a :class:`RemoteProtocolError`.
    """

    def __init__(self, *, max_line: int = 1 << 20, max_event: int = 16 << 20) -> None:
        self.max_line = max_line
        self.max_event = max_event
        self.last_event_id: str | None = None
        self.retry: int | None = None
        self._buffer = bytearray()
        self._started = False  # the BOM check has been done
        self._skip_lf = False  # the previous chunk ended in CR; a leading LF belongs to it
        self._data: list[str] = []
        self._data_size = 0
        self._event = ""
        self._block_retry: int | None = None
        self._events: deque[SseMessage] = deque()

    def feed(self, data: bytes) -> None:
        """Buffer bytes and parse every complete line in them."""
        buf = self._buffer
        buf += data
        if not self._started:
            if len(buf) < 3 and b"\xef\xbb\xbf".startswith(bytes(buf)):
                return  # could still be a BOM
            self._started = True
            if buf.startswith(b"\xef\xbb\xbf"):
                del buf[:3]
        start = 0
        size = len(buf)
        # Next CR and LF at or after ``start``; -1 once none is left (so no rescans).
        cr = buf.find(b"\r")
        lf = buf.find(b"\n")
        while start < size:
            if self._skip_lf:
                self._skip_lf = False
                if buf[start] == 0x0A:
                    start += 1
                    continue
            if 0 <= cr < start:
                cr = buf.find(b"\r", start)
            if 0 <= lf < start:
                lf = buf.find(b"\n", start)
            if cr < 0 and lf < 0:
                break
            end = lf if cr < 0 or (0 <= lf < cr) else cr
            self._line(bytes(buf[start:end]))
            start = end + 1
            if end == cr:
                self._skip_lf = True
        del buf[:start]
        if len(buf) > self.max_line:
            raise RemoteProtocolError(f"SSE line longer than {self.max_line} bytes")

    def next_event(self) -> SseMessage | None:
        return self._events.popleft() if self._events else None

    def _line(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace")
        if not line:
            self._dispatch()
            return
        if line.startswith(":"):
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_size += len(value) + 1
            if self._data_size > self.max_event:
                raise RemoteProtocolError(f"SSE event larger than {self.max_event} bytes")
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry = self._block_retry = int(value)

    def _dispatch(self) -> None:
        if self._data:
            self._events.append(
                SseMessage(
                    data="\n".join(self._data),
                    event=self._event or "message",
                    id=self.last_event_id,
                    retry=self._block_retry,
                )
            )
        self._data = []
        self._data_size = 0
        self._event = ""
        self._block_retry = None
