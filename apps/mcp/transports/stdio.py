"""MCP over stdio: newline-delimited JSON-RPC, one client, one session for the process's life.

Each message is one line of UTF-8 JSON, both ways (the spec's stdio transport). The session,
its calls and the tools are the service's, as on every HTTP transport; what differs is the
way out: a message is written as one line the moment the session produces it (a progress
report, a partial result, a log line, a response), since there is one client and no stream
to route it to. A line longer than the service's body bound (``max_body_bytes``, 1 MiB) is
refused without being held: what is read past the bound is dropped up to the next newline.

There is no HTTP server behind this transport, so a result never links to one: the service
that serves it is made with an unbounded inline audio limit, and :meth:`StdioPeer.keep_audio`
refuses to hand out a link.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from diaproto.apps.mcp.peer import McpPeer, Transport
from diaproto.mcp import JsonRpcError, Outbound, parse_message
from diaproto.mcp.jsonrpc import INVALID_REQUEST
from diaproto.runtime import Runtime

if TYPE_CHECKING:
    from diaproto.apps.mcp.service import McpService

log = logging.getLogger("diaproto.mcp")

#: Whose generations a stdio client's calls are (the per-peer generation limit counts them).
STDIO_OWNER = "stdio"


class LineTooLong:
    """What :class:`LineSplitter` yields for a line it dropped for its length."""

    def __init__(self, limit: int) -> None:
        self.limit = limit


class LineSplitter:
    """Bytes in, complete lines out; a line over ``limit`` bytes is dropped as it arrives
    (memory stays bounded by ``limit``) and reported once, as :class:`LineTooLong`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buffer = bytearray()
        self._dropping = False  # inside an over-long line: discard up to its newline

    def feed(self, data: bytes) -> Iterator[bytes | LineTooLong]:
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            piece = data[start:end]
            start = end + 1
            if self._dropping:
                self._dropping = False
                continue
            if len(self._buffer) + len(piece) > self.limit:
                self._buffer.clear()
                yield LineTooLong(self.limit)
                continue
            line = bytes(self._buffer + piece)
            self._buffer.clear()
            yield line
        rest = data[start:]
        if self._dropping:
            return
        if len(self._buffer) + len(rest) > self.limit:
            self._buffer.clear()
            self._dropping = True
            yield LineTooLong(self.limit)
        else:
            self._buffer += rest

    @property
    def buffered(self) -> int:
        """Bytes held of a line not yet complete (never more than ``limit``)."""
        return len(self._buffer)

    def finish(self) -> bytes:
        """At the end of input: an unterminated last line (empty when there is none)."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._dropping = False
        return rest


@dataclass(eq=False)
class StdioPeer(McpPeer):
    """The one client of a stdio server: every message leaves at once, as one line."""

    write_line: Callable[[str], None] = field(kw_only=True)

    def _send(self, message: Outbound, now: float) -> None:
        # JSON text from encode_message: compact, newlines inside strings escaped.
        self.write_line(message.text)

    def keep_audio(self, wav: bytes) -> str:
        raise RuntimeError("no audio links over stdio: results carry their audio inline")


class StdioTransport:
    """Moves lines between the process's streams and the peer's session. Loop thread only."""

    def __init__(
        self, service: McpService, runtime: Runtime, write_line: Callable[[str], None]
    ) -> None:
        self.peer = StdioPeer(
            service,
            service.new_session(),
            runtime,
            Transport.STDIO,
            owner=STDIO_OWNER,
            write_line=write_line,
        )
        self._lines = LineSplitter(service.config.max_body_bytes)
        self.closed = False

    def receive_data(self, data: bytes) -> None:
        """Bytes read from stdin: each complete line is one message."""
        if self.closed:
            return
        for line in self._lines.feed(data):
            self._line(line)
        self.peer.pump(self.peer.runtime.now())

    def receive_eof(self) -> None:
        """stdin ended: an unterminated last line is still read, then the session ends."""
        if not self.closed:
            self._line(self._lines.finish())
            self.peer.pump(self.peer.runtime.now())
        self.close()

    def close(self) -> None:
        """End the session: calls in flight are cancelled (their generations stop)."""
        if self.closed:
            return
        self.closed = True
        self.peer.close(self.peer.runtime.now())

    def log(self, level: str, message: str, logger: str) -> None:
        """A server log line, also to the client (``notifications/message``) when it asked
        for that level (``logging/setLevel``; info until it does)."""
        if not self.closed and self.peer.session.log(level, message, logger):
            self.peer.pump(self.peer.runtime.now())

    def _line(self, line: bytes | LineTooLong) -> None:
        if isinstance(line, LineTooLong):
            message = f"a message is one line of at most {line.limit} bytes"
            self._refuse(JsonRpcError(INVALID_REQUEST, message))
            return
        if not line.strip():
            return  # a blank line carries no message
        try:
            parsed = parse_message(line)
        except JsonRpcError as exc:
            self._refuse(exc)
        else:
            self.peer.session.receive(parsed)

    def _refuse(self, error: JsonRpcError) -> None:
        log.warning("MCP over stdio: refused a line (%d): %s", error.code, error.message)
        self.peer.session.refuse(error.as_response())
