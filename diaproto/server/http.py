"""The HTTP/1.1 front of a server connection, on h11: parsing, limits, routing, refusals,
plain and streamed answers, and the keep-alive cycle from one request to the next."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable

import h11

from diaproto.errors import LocalProtocolError, RemoteProtocolError
from diaproto.events import Event, Headers, RemoteError, Request, SseRequest, WebSocketRequest
from diaproto.headers import (
    decode_headers,
    encode_headers,
    error_response_body,
    header_tokens,
    header_values,
)
from diaproto.scheduler import Scheduler
from diaproto.server.core import ConnectionCore
from diaproto.server.framing import Framer, body_frame, sse_framer
from diaproto.server.state import State
from diaproto.sse import SSE_RESPONSE_HEADERS, SseEvent, encode_retry

CHUNK_SIZE_LIMIT = 2**64  # a chunk size at or past this is malformed (400), not large (413)


class HttpFront(ConnectionCore):
    """Requests in, answers out; hands a WebSocket upgrade or an SSE stream to the others."""

    __slots__ = ()  # in ConnectionCore

    def _init_http_front(self, now: float) -> None:
        self._cycle_started = now
        self._first_cycle = True
        self._cycle_bytes = 0  # request bytes seen in this cycle (0: idle keep-alive)
        self._held_inbound = 0  # bytes received while a request is being answered
        self._h11_fed = 0  # bytes handed to h11 in all
        self._head_start = 0  # where (in those bytes) the current request's head begins
        self._body: list[bytes] = []
        self._body_size = 0

    # --- answering requests ----------------------------------------------------------------

    def respond(self, status: int, headers: Headers = (), body: bytes = b"", *, now: float) -> None:
        """A complete response to the pending request (any kind, including a refused upgrade)."""
        self._expect_pending()
        response_headers = [*headers, ("content-length", str(len(body)))]
        self._h11_send(_response(status, response_headers))
        if body and not self._answering_head():  # HEAD: the length is told, the body is not
            self._h11_send(h11.Data(data=body))
        self._h11_send(h11.EndOfMessage())
        self._pending = None
        self._next_cycle(now)

    def start_response(self, status: int, headers: Headers = (), *, now: float) -> None:
        """Open a streamed body (chunked): queue bytes with ``send`` on streams you open."""
        self._expect_pending()
        self._h11_send(_response(status, headers))
        self._start_streaming(body_frame, sse=False)

    def accept_sse(
        self,
        headers: Headers = (),
        *,
        now: float,
        stamp: Callable[[SseEvent], SseEvent] | None = None,
        id_prefix: str = "",
    ) -> None:
        """Answer the pending request with an SSE stream.

        ``stamp`` sees every SseEvent as it is framed, in the order events leave (give ids
        there for a resumable stream: see :func:`diaproto.server.framing.sse_framer`); what was
        still queued when the connection closed is then in ``unsent``. ``id_prefix`` goes
        before the sequence number in each data event's id (an epoch, say ``"k3x9."``: a
        ``Last-Event-ID`` then names the history its number belongs to); refused with
        :class:`LocalProtocolError` unless it is at most 64 of ``A-Z a-z 0-9 . _ ~ -``.
        """
        framer = sse_framer(stamp, id_prefix)  # (refuses a bad prefix before any change)
        self._expect_pending()
        self._h11_send(_response(200, [*SSE_RESPONSE_HEADERS, *headers]))
        self._start_streaming(framer, sse=True)
        self._last_sse_write = now
        if self.config.sse_retry_ms is not None:
            self._write_body(encode_retry(self.config.sse_retry_ms))

    def _start_streaming(self, framer: Framer, *, sse: bool) -> None:
        self._pending = None
        self._enter(State.STREAMING)
        self._framer = framer
        self._sse = sse
        self._ending = False
        self._scheduler = Scheduler(self.config.scheduler)
        self._open_control_stream(self._keepalive.last_received)

    def _finish_response(self) -> None:
        self._h11_send(h11.EndOfMessage())
        self._framer = None
        self._sse = False
        self._ending = False
        self._next_cycle(self._keepalive.last_received)

    def _next_cycle(self, now: float) -> None:
        if self._http.our_state is h11.MUST_CLOSE or self._http.their_state is h11.MUST_CLOSE:
            self._set_closed(None, "response complete; the connection does not persist")
            return
        # Both sides are DONE here: events (and so answers) come only after a whole request.
        self._http.start_next_cycle()
        self._request = None
        self._enter(State.AWAITING_REQUEST)
        self._first_cycle = False
        self._cycle_started = now
        buffered = _h11_buffered(self._http)  # the next request's bytes, already here
        self._cycle_bytes = buffered
        self._head_start = self._h11_fed - buffered
        self._held_inbound = 0

    # --- reading requests ------------------------------------------------------------------

    def _receive_http(self, data: bytes, now: float) -> None:
        """Hand the peer's bytes to h11, counted against this cycle's bounds."""
        if self.state is State.AWAITING_REQUEST:
            if not self._cycle_bytes and not self._first_cycle:
                self._cycle_started = now  # a keep-alive request is timed from its first byte
            self._cycle_bytes += len(data)
        else:
            self._held_inbound += len(data)  # pipelined while we answer: bounded
        self._h11_fed += len(data)
        self._http.receive_data(data)

    def _inbound_below_bound(self) -> bool:
        """Whether the peer's bytes held while we answer leave room to read more."""
        return self._held_inbound < self.config.limits.max_buffered_inbound

    def _request_deadline(self) -> float | None:
        """While a request is awaited: when the handshake or keep-alive idle timeout fires.

        The handshake timeout runs for the first request and for one already begun; between
        requests on a kept-alive connection, the idle timeout."""
        timeouts = self.config.timeouts
        begun = self._cycle_bytes > 0 or self._first_cycle
        limit = timeouts.handshake if begun else timeouts.idle
        return None if limit is None else self._cycle_started + limit

    def _request_timer(self, now: float) -> None:
        """The handshake and keep-alive idle timeouts, while a request is awaited."""
        deadline = self._request_deadline()
        if deadline is None or now < deadline:
            return
        if self._cycle_bytes:
            self._refuse(RemoteProtocolError("request not complete in time", http_status=408))
        elif self._first_cycle:
            self._close_quietly("no request in time")
        else:
            self._close_quietly("idle keep-alive connection")

    def _advance_http(self) -> bool:
        try:
            event = self._http.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            message = self._head_too_large() if status == 431 else str(exc)
            self._refuse(RemoteProtocolError(message, http_status=status))
            return True
        if event is h11.NEED_DATA or event is h11.PAUSED:
            # A chunk's size is known once its line is read: refuse now, not at the timeout.
            return event is h11.NEED_DATA and self._refuse_chunk_size(0)
        if isinstance(event, h11.Request):
            self._on_request_head(event)
        elif isinstance(event, h11.Data):
            self._on_body_data(event.data)
        elif isinstance(event, h11.EndOfMessage):
            self._route_request()
        else:  # h11.ConnectionClosed, the only other event h11 gives a server
            self._set_closed(None, "the client closed the connection")
        return True

    def _on_request_head(self, request: h11.Request) -> None:
        """Check the head against the limits before any of the body is read."""
        self._request = request
        self._body = []
        self._body_size = 0
        length = _content_length(request)
        # h11 bounds only a head that arrives in pieces; this bounds one that came whole.
        head_end = self._h11_fed - _h11_buffered(self._http)
        framing_error = _framing_error(request)
        if head_end - self._head_start > self.config.limits.max_header_bytes:
            self._refuse(RemoteProtocolError(self._head_too_large(), http_status=431))
        elif framing_error is not None:
            self._refuse(framing_error)
        elif length is not None and length > self.config.limits.max_body_bytes:
            self._refuse(RemoteProtocolError("request body too large", http_status=413))
        elif self._http.they_are_waiting_for_100_continue:
            self._h11_send(h11.InformationalResponse(status_code=100, headers=[]))

    def _on_body_data(self, data: bytes) -> None:
        self._body_size += len(data)
        if self._body_size > self.config.limits.max_body_bytes:
            self._refuse(RemoteProtocolError("request body too large", http_status=413))
        else:
            self._body.append(bytes(data))
            self._refuse_chunk_size(len(data))

    def _route_request(self) -> None:
        request = self._request
        assert request is not None
        headers = decode_headers(request.headers)
        method = request.method.decode("ascii")
        target = request.target.decode("ascii", errors="replace")
        body = b"".join(self._body)
        self._body = []
        event: Event
        if method == "CONNECT":
            # h11 takes any 2xx answer to CONNECT as the start of a tunnel, which we do not
            # serve: answering it would leave the connection stuck.
            self._refuse(RemoteProtocolError("CONNECT is not supported", http_status=405))
            return
        if "websocket" in header_tokens(headers, "upgrade"):
            error = _websocket_handshake_error(method, headers)
            if error is not None:
                self._pending = Request(method, target, headers, body)
                self._enter(State.REQUEST_RECEIVED)
                self._refuse(error)
                return
            offered = tuple(
                proto
                for value in header_values(headers, "sec-websocket-protocol")
                for proto in (p.strip() for p in value.split(","))
                if proto
            )
            event = WebSocketRequest(target, headers, offered)
        elif "text/event-stream" in ",".join(header_values(headers, "accept")):
            last_id = next(iter(header_values(headers, "last-event-id")), None)
            event = SseRequest(method, target, headers, body, last_id)
        else:
            event = Request(method, target, headers, body)
        self._pending = event
        self._enter(State.REQUEST_RECEIVED)
        self._events.append(event)

    # --- refusing --------------------------------------------------------------------------

    def _refuse(self, error: RemoteProtocolError) -> None:
        """Answer a bad request with its status and close; report it as an event."""
        self._events.append(RemoteError(error, fatal=True))
        status = error.http_status or 400
        headers: list[tuple[str, str]] = [
            ("content-type", "text/plain; charset=utf-8"),
            ("connection", "close"),
        ]
        if status == 426:
            headers.append(("sec-websocket-version", "13"))
        body = error_response_body(status, error.message)
        headers.append(("content-length", str(len(body))))
        self._h11_send(h11.Response(status_code=status, headers=encode_headers(headers)))
        if not self._answering_head():
            self._h11_send(h11.Data(data=body))
        self._h11_send(h11.EndOfMessage())
        self._pending = None
        self._set_closed(None, error.message)

    def _refuse_chunk_size(self, just_read: int) -> bool:
        """Refuse a body whose current chunk declares more than may arrive; True if so.
        ``just_read``: bytes of the chunk in the event just taken (0 on NEED_DATA)."""
        remaining = _chunk_remaining(self._http)
        if just_read + remaining >= CHUNK_SIZE_LIMIT:
            # RFC 9112 7.1: a size no 64-bit integer holds is malformed, not merely large.
            self._refuse(RemoteProtocolError("chunk size overflows 64 bits", http_status=400))
        elif self._body_size + remaining > self.config.limits.max_body_bytes:
            # _body_size already counts just_read.
            self._refuse(RemoteProtocolError("request body too large", http_status=413))
        else:
            return False
        return True

    def _head_too_large(self) -> str:
        return f"request head larger than {self.config.limits.max_header_bytes} bytes"

    def _close_quietly(self, reason: str) -> None:
        self._set_closed(None, reason)


def _response(status: int, headers: Iterable[tuple[str, str]]) -> h11.Response:
    """An h11 response; a bad status or header is the caller's mistake, in our error type."""
    try:
        return h11.Response(status_code=status, headers=encode_headers(headers))
    except (h11.LocalProtocolError, UnicodeEncodeError) as exc:
        raise LocalProtocolError(f"invalid response: {exc}") from exc


def _h11_buffered(conn: h11.Connection) -> int:
    """How many received bytes h11 has not parsed yet.

    ``trailing_data``, h11's public view, copies them: per request that would make a long
    run of pipelined requests cost quadratic time. Only the length is needed here.
    """
    return len(conn._receive_buffer)


def _chunk_remaining(conn: h11.Connection) -> int:
    """Bytes still due in the chunk being read (0 outside a chunked body).

    h11 parses the chunk size but keeps it in its reader; without it a chunk that declares
    more than the body limit, and then sends little, would wait for the handshake timeout.
    """
    remaining = getattr(getattr(conn, "_reader", None), "_bytes_in_chunk", 0)
    return remaining if isinstance(remaining, int) else 0


def _framing_error(request: h11.Request) -> RemoteProtocolError | None:
    """A request whose version or body framing we will not guess at (RFC 9112 2.3, 6.1)."""
    if not request.http_version.startswith(b"1."):
        version = request.http_version.decode("ascii")
        return RemoteProtocolError(f"HTTP/{version} is not supported", http_status=505)
    names = {name for name, _ in request.headers}
    if b"transfer-encoding" in names:
        # h11 reads such a body as chunked and keeps the connection alive: a proxy in front
        # that went by Content-Length (or by HTTP/1.0) would see a different next request.
        if b"content-length" in names:
            return RemoteProtocolError(
                "both Content-Length and Transfer-Encoding: ambiguous framing", http_status=400
            )
        if request.http_version == b"1.0":
            return RemoteProtocolError(
                "Transfer-Encoding in an HTTP/1.0 request: ambiguous framing", http_status=400
            )
    return None


def _content_length(request: h11.Request) -> int | None:
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)  # h11 has already checked it is a number
    return None


def _websocket_handshake_error(method: str, headers: Headers) -> RemoteProtocolError | None:
    if method != "GET":
        return RemoteProtocolError("a WebSocket upgrade must be a GET", http_status=400)
    if "upgrade" not in header_tokens(headers, "connection"):
        return RemoteProtocolError("missing 'Connection: Upgrade'", http_status=400)
    versions = header_values(headers, "sec-websocket-version")
    if versions != ["13"]:
        return RemoteProtocolError("unsupported WebSocket version", http_status=426)
    keys = header_values(headers, "sec-websocket-key")
    try:
        valid_key = len(keys) == 1 and len(base64.b64decode(keys[0], validate=True)) == 16
    except ValueError:  # binascii.Error, or a key with non-ASCII characters
        valid_key = False
    if not valid_key:
        return RemoteProtocolError("invalid Sec-WebSocket-Key", http_status=400)
    return None
