"""``ConnectionConfig.send_buffer`` reaches the kernel: every adapter sets ``SO_SNDBUF`` on the
sockets it accepts, and leaves the kernel's own buffer alone when none is configured.

The server runs in a thread of this process, so its end of the connection is one of our file
descriptors: the test finds it by its addresses and reads the option back.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys

import pytest
from support import POLL_LIMIT, Echo, serving, wait_for

from diaproto.config import ConnectionConfig

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="finds the server's socket in /proc/self/fd"
)

#: Under ``net.core.wmem_max`` (the kernel's cap, 208 KiB by default) and an odd size, so
#: no default or autotuned buffer reads back the same.
SEND_BUFFER = 40_000


def server_end(client: socket.socket) -> socket.socket | None:
    """A duplicate of the accepted socket at the other end of ``client``, or None."""
    want = (client.getpeername(), client.getsockname())
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError, ValueError):  # gone, not a socket, not connected
            fd = os.dup(int(name))
            try:
                sock = socket.socket(fileno=fd)
            except OSError:
                os.close(fd)  # not a socket: the duplicate must not leak
                raise
            with contextlib.ExitStack() as closing:
                closing.callback(sock.close)
                if (
                    sock.type == socket.SOCK_STREAM
                    and (sock.getsockname(), sock.getpeername()) == want
                ):
                    closing.pop_all()
                    return sock
    return None


def sndbuf_of_accepted(runtime: str, config: ConnectionConfig) -> int:
    with (
        serving(runtime, Echo(), config) as handle,
        socket.create_connection(("127.0.0.1", handle.port), POLL_LIMIT) as client,
    ):
        # A whole exchange: the adapter has accepted and configured the socket by then.
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.recv(4096).startswith(b"HTTP/1.1 200")
        accepted = wait_for(lambda: server_end(client), "the accepted socket is found")
        with accepted:
            return accepted.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)


def test_send_buffer_is_set_on_accepted_sockets(runtime_or_uvloop: str) -> None:
    got = sndbuf_of_accepted(runtime_or_uvloop, ConnectionConfig(send_buffer=SEND_BUFFER))
    assert got == 2 * SEND_BUFFER  # Linux doubles it for its bookkeeping


def test_without_send_buffer_the_kernels_stays(runtime: str) -> None:
    got = sndbuf_of_accepted(runtime, ConnectionConfig())
    assert got != 2 * SEND_BUFFER
