"""One socket option every adapter sets on an accepted connection."""

from __future__ import annotations

import contextlib
import socket

#: Unsent bytes the kernel may hold per connection. Without a bound Linux grows the send buffer
#: to megabytes, and a control message queued behind them waits seconds for a slow reader
#: (docs/benchmarks.md, P5: 3.7 s before, 0.16 s after); with it the kernel takes little more
#: than this, and the rest waits in the core's scheduler, which sends control messages first.
#: Bytes sent and not yet acknowledged are not counted, so throughput is unaffected.
NOTSENT_LOWAT = 16 * 1024


def bound_unsent(sock: socket.socket | None) -> None:
    """Set ``TCP_NOTSENT_LOWAT`` where the platform has it; otherwise leave the defaults."""
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if sock is None or option is None:
        return
    with contextlib.suppress(OSError):  # not TCP (a Unix socket), or refused: defaults apply
        sock.setsockopt(socket.IPPROTO_TCP, option, NOTSENT_LOWAT)
