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
        lines.extend(
            f"data: {line}"
            for line in self.data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        )
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


_MAX_U64 = (1 << 64) - 1


class SseParser:
    """Turns a byte stream into :class:`SseMessage` events, split anywhere.

    Follows the WHATWG "event stream interpretation": a leading BOM is skipped, lines end
    in CR, LF or CRLF, ``id`` containing NUL is ignored, ``retry`` must be all digits, an
    event with no data is not dispatched, and a block cut off before its blank line is
    never dispatched. ``last_event_id`` is what a reconnect sends as ``Last-Event-ID``: as
    in a browser it takes an ``id`` only when that id's block ends (even a block without
    data), so an event cut off mid-block is asked for again. A client that reconnects with
    ``Last-Event-ID`` passes the same value as ``last_event_id``, so blocks without an id
    (the ``retry`` block, heartbeats) keep it.

    A line longer than ``max_line`` bytes (its end excluded), or an event whose data lines
    total more than ``max_event`` bytes, is a :class:`RemoteProtocolError`; the parser is
    not usable after one. A ``retry`` too large for 64 bits is ignored, as browsers do.
    """

    def __init__(
        self,
        *,
        max_line: int = 1 << 20,
        max_event: int = 16 << 20,
        last_event_id: str | None = None,
    ) -> None:
        self.max_line = max_line
        self.max_event = max_event
        self.last_event_id = last_event_id
        self.retry: int | None = None
        self._buffer = bytearray()
        self._started = False  # the BOM check has been done
        self._skip_lf = False  # the previous chunk ended in CR; a leading LF belongs to it
        self._data: list[str] = []
        self._data_size = 0
        self._event = ""
        self._id = last_event_id  # WHATWG's "last event ID buffer", copied at dispatch
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
            if end - start > self.max_line:
                raise RemoteProtocolError(f"SSE line longer than {self.max_line} bytes")
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
            # Raw bytes of the value (``data``, the colon and one space are not) plus the LF.
            self._data_size += len(raw) - min(len(raw), 6 if raw.startswith(b"data: ") else 5)
            self._data_size += 1
            if self._data_size > self.max_event:
                raise RemoteProtocolError(f"SSE event larger than {self.max_event} bytes")
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            # Browsers ignore a value that does not fit 64 bits (and int() refuses more than
            # 4300 digits, so a long run of them must not reach it).
            digits = value.lstrip("0") or "0"
            if len(digits) <= 20 and (retry := int(digits)) <= _MAX_U64:
                self.retry = self._block_retry = retry

    def _dispatch(self) -> None:
        self.last_event_id = self._id
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
