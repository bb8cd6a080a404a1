"""A send on an idle connection: the scheduler lets the message through (no queue, no
batch), and the next ``data_to_send`` frames it ahead of anything queued after it. Bursts
still leave together, linger still holds company after a write, and a message let through
but never written is among ``unsent`` at a close."""

from __future__ import annotations

from core_support import NO_HEARTBEAT, QUIET, drain
from server_websocket_support import RawClient

from diaproto.config import ConnectionConfig, SchedulerConfig
from diaproto.events import ConnectionClosed
from diaproto.scheduler import Priority
from diaproto.testing import FakeClock

DATA, URGENT = 1, 2
LINGER = 0.002
LINGERING = ConnectionConfig(timeouts=NO_HEARTBEAT, scheduler=SchedulerConfig(linger=LINGER))


def binary(payload: bytes) -> bytes:
    """One unmasked binary frame, as a server sends it (payload < 126 bytes)."""
    return bytes((0x82, len(payload))) + payload


def plain_websocket(config: ConnectionConfig = QUIET) -> RawClient:
    client = RawClient(FakeClock(), offer=(), accept=None, config=config)
    # As an adapter does after each write: the handshake has left the transport.
    client.server.set_transport_buffered(0, client.clock.now)
    client.server.open_stream(DATA, client.clock.now)
    return client


def test_a_send_on_an_idle_websocket_is_not_queued_and_leaves_with_the_next_write() -> None:
    client = plain_websocket()
    server, now = client.server, client.clock.now
    assert server.send(DATA, b"first", now) == 1
    assert server.scheduler.queued_bytes() == 0  # let through: no queue
    assert server.scheduler.in_flight_bytes == 5  # counted until the transport reports
    assert server.data_to_send(now) == binary(b"first")
    assert server.data_to_send(now) == b""


def test_a_burst_leaves_in_one_write_in_order() -> None:
    client = plain_websocket(LINGERING)
    server, now = client.server, client.clock.now
    for part in (b"a", b"b", b"c"):
        server.send(DATA, part, now)
    assert server.data_to_send(now) == binary(b"a") + binary(b"b") + binary(b"c")


def test_linger_counts_from_a_message_that_left_alone() -> None:
    client = plain_websocket(LINGERING)
    server, now = client.server, client.clock.now
    server.send(DATA, b"one", now)
    assert server.data_to_send(now) == binary(b"one")
    server.set_transport_buffered(0, now)
    server.send(DATA, b"two", now)  # right after a write: it waits for company
    assert server.data_to_send(now) == b""
    assert server.data_to_send(now + LINGER) == binary(b"two")


def test_what_is_queued_after_it_follows_it_whatever_its_class() -> None:
    client = plain_websocket()
    server, now = client.server, client.clock.now
    server.open_stream(URGENT, now, priority=Priority.CONTROL)
    server.send(DATA, b"data", now)  # let through
    server.send(URGENT, b"urgent", now)  # queued: the first counts as in flight
    assert server.scheduler.queued_bytes() == 6
    assert server.data_to_send(now) == binary(b"data") + binary(b"urgent")


def test_a_message_let_through_and_never_written_is_unsent_at_a_close() -> None:
    client = plain_websocket()
    server, now = client.server, client.clock.now
    server.send(DATA, b"let through", now)
    server.send(DATA, b"queued", now)
    server.receive_eof(now)
    assert any(isinstance(event, ConnectionClosed) for event in drain(server))
    assert server.unsent == [b"let through", b"queued"]
    assert server.data_to_send(now) == b""
