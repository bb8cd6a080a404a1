"""The SSE client: one HTTP request, its ``text/event-stream`` answer parsed into events.

It keeps the last event id (and the server's ``retry``) so a reconnect can resume with
``Last-Event-ID``. Any other answer ends as one :class:`~diaproto.events.Rejected`.
"""

from __future__ import annotations

from collections import deque

import h11

from diaproto.client.rejection import PendingRejection
from diaproto.client.state import ClientState, transition
from diaproto.config import ConnectionConfig
from diaproto.errors import RemoteProtocolError
from diaproto.events import (
    ConnectionClosed,
    Event,
    Headers,
    RemoteError,
    SseResponseStarted,
)
from diaproto.headers import decode_headers, encode_headers, header_values
from diaproto.sse import SseParser


class SseClientConnection:
    """An SSE client for one request; reconnect with ``last_event_id`` to resume."""

    def __init__(
        self,
        now: float,
        host: str,
        target: str = "/",
        *,
        method: str = "GET",
        headers: Headers = (),
        body: bytes = b"",
        last_event_id: str | None = None,
        config: ConnectionConfig | None = None,
    ) -> None:
        self.config = config or ConnectionConfig()
        self.state = ClientState.CONNECTING
        self._h11 = h11.Connection(
            h11.CLIENT, max_incomplete_event_size=self.config.limits.max_header_bytes
        )
        request_headers: list[tuple[str, str]] = [
            ("host", host),
            ("accept", "text/event-stream"),
            ("cache-control", "no-store"),
        ]
        if last_event_id is not None:
            request_headers.append(("last-event-id", last_event_id))
        if body or method not in ("GET", "HEAD"):
            request_headers.append(("content-length", str(len(body))))
        request_headers.extend(headers)
        self._out = bytearray(
            self._h11.send(
                h11.Request(method=method, target=target, headers=encode_headers(request_headers))
            )
            or b""
        )
        if body:
            self._out += self._h11.send(h11.Data(data=body)) or b""
        self._out += self._h11.send(h11.EndOfMessage()) or b""
        limit = self.config.limits.max_message_bytes
        self._parser = SseParser(max_line=limit, max_event=limit, last_event_id=last_event_id)
        self._events: deque[Event] = deque()
        self._started = now
        self._last_received = now
        self._reject: PendingRejection | None = None

    def _enter(self, state: ClientState) -> None:
        self.state = transition(self.state, state)

    @property
    def last_event_id(self) -> str | None:
        """The id to send as ``Last-Event-ID`` when reconnecting."""
        return self._parser.last_event_id

    @property
    def retry(self) -> int | None:
        """The reconnection delay the server asked for (milliseconds)."""
        return self._parser.retry

    def receive_data(self, data: bytes, now: float) -> None:
        if data and self.state is not ClientState.CLOSED:
            self._last_received = now
            self._h11.receive_data(data)

    def receive_eof(self, now: float) -> None:
        if self.state is not ClientState.CLOSED:
            self._h11.receive_data(b"")

    def next_event(self) -> Event | None:
        while not self._events:
            message = self._parser.next_event()
            if message is not None:
                return message
            if self.state is ClientState.CLOSED or not self._pull():
                break
        return self._events.popleft() if self._events else None

    def data_to_send(self, now: float) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def next_deadline(self) -> float | None:
        timeouts = self.config.timeouts
        if self.state is ClientState.CONNECTING and timeouts.handshake is not None:
            return self._started + timeouts.handshake
        if self.state is ClientState.OPEN and timeouts.idle is not None:
            return self._last_received + timeouts.idle
        return None

    def handle_timer(self, now: float) -> None:
        deadline = self.next_deadline()
        if deadline is not None and now >= deadline:
            what = "no response" if self.state is ClientState.CONNECTING else "no bytes"
            self._fail(RemoteProtocolError(f"{what} from the server in time"))

    @property
    def finished(self) -> bool:
        return self.state is ClientState.CLOSED

    def close(self, now: float) -> None:
        """Stop listening; the adapter then closes the transport."""
        self._closed("closed by the application")

    def _pull(self) -> bool:
        try:
            event = self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            self._fail(RemoteProtocolError(f"invalid response: {exc}"))
            return True
        if event is h11.NEED_DATA or event is h11.PAUSED:
            return False
        if isinstance(event, h11.Response):
            self._on_response(event)
        elif isinstance(event, h11.Data):
            self._on_body(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            if self._reject is not None:
                self._events.append(self._reject.event())
            self._closed("the server ended the stream")
        # Nothing else matters: 1xx answers are skipped, and we stop at the end of the body.
        return True

    def _on_response(self, event: h11.Response) -> None:
        headers = decode_headers(event.headers)
        content_type = ",".join(header_values(headers, "content-type"))
        if event.status_code == 200 and content_type.startswith("text/event-stream"):
            self._enter(ClientState.OPEN)
            self._events.append(SseResponseStarted(event.status_code, headers))
        else:
            self._reject = PendingRejection(event.status_code, headers)

    def _on_body(self, data: bytes) -> None:
        if self._reject is not None:
            self._reject.body.append(data)
            return
        try:
            self._parser.feed(data)
        except RemoteProtocolError as exc:
            self._fail(exc)

    def _fail(self, error: RemoteProtocolError) -> None:
        self._events.append(RemoteError(error, fatal=True))
        self._closed(error.message)

    def _closed(self, reason: str) -> None:
        if self.state is not ClientState.CLOSED:
            self._enter(ClientState.CLOSED)
            self._events.append(ConnectionClosed(None, reason))
