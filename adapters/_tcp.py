"""Socket options the adapters set: on every accepted connection, and before an abort."""

from __future__ import annotations

import contextlib
import socket
import struct

#: Unsent bytes the kernel may hold per connection. Without a bound Linux grows the send buffer
#: to megabytes, and a control message queued behind them waits seconds for a slow reader
#: (docs/benchmarks.md, P5: 3.7 s before, 0.16 s after); with it the kernel takes little more
#: than this, and the rest waits in the core's scheduler, which sends control messages first.
#: Bytes sent and not yet acknowledged are not counted, so throughput is unaffected.
NOTSENT_LOWAT = 16 * 1024


def bound_unsent(sock: socket.socket | None, send_buffer: int | None = None) -> None:
    """Set ``TCP_NOTSENT_LOWAT`` where the platform has it, and ``SO_SNDBUF`` to
    ``send_buffer`` when one is configured (``ConnectionConfig.send_buffer``); otherwise
    leave the defaults."""
    if sock is None:
        return
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if option is not None:
        with contextlib.suppress(OSError):  # not TCP (a Unix socket), or refused: defaults apply
            sock.setsockopt(socket.IPPROTO_TCP, option, NOTSENT_LOWAT)
    if send_buffer is not None:
        with contextlib.suppress(OSError):  # refused: the kernel's buffer applies
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)


def drop_on_close(sock: socket.socket | None) -> None:
    """``SO_LINGER`` 0: closing the socket then resets the connection at once, discarding
    unsent bytes, instead of leaving the kernel retrying them to a peer that does not read."""
    if sock is None:
        return
    with contextlib.suppress(OSError, ValueError):  # already closed, or not a socket option
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
