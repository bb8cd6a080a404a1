"""A send on an idle connection: the scheduler lets the message through (no queue, no
batch), and the next ``data_to_send`` frames it ahead of anything queued after it. Bursts
still leave together, linger still holds company after a write, and a message let through
but never written is among ``unsent`` at a close."""

from __future__ import annotations

from core_support import NO_HEARTBEAT, QUIET, drain
from server_websocket_support import RawClient
from wsproto.events import BytesMessage

from diaproto.config import ConnectionConfig, SchedulerConfig
from diaproto.events import ConnectionClosed
from diaproto.replay import ReplayBuffer
from diaproto.scheduler import Priority
from diaproto.testing import FakeClock

DATA, URGENT = 1, 2
LINGER = 0.002
LINGERING = ConnectionConfig(timeouts=NO_HEARTBEAT, scheduler=SchedulerConfig(linger=LINGER))
NO_LINGER = ConnectionConfig(timeouts=NO_HEARTBEAT, scheduler=SchedulerConfig(linger=0.0))


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
    server.set_transport_buffered(7, now)
    assert server.transport_buffered == 7  # what the transport holds, as last reported


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


def test_nothing_is_let_through_while_handed_out_bytes_are_unreported() -> None:
    # Between data_to_send and the transport's report (an adapter hands out events there),
    # a batch is counted nowhere: a message let through then would escape the budget.
    client = plain_websocket(NO_LINGER)
    server, now = client.server, client.clock.now
    server.open_stream(URGENT, now)
    server.send(URGENT, b"x" * 10, now)  # let through
    server.send(URGENT, b"y" * 10, now)  # queued
    assert server.data_to_send(now)
    server.send(DATA, b"z" * 50, now)  # not let through: queued, and counted
    assert server.scheduler.queued_bytes() == 50
    server.set_transport_buffered(0, now)
    assert server.data_to_send(now) == binary(b"z" * 50)
    server.set_transport_buffered(0, now)
    server.send(DATA, b"w", now)  # reported: let through again
    assert server.scheduler.queued_bytes() == 0


def test_a_resume_replays_a_message_let_through_once_and_in_order() -> None:
    client = RawClient(FakeClock(), offer=(), accept=None, config=NO_LINGER)
    server, now = client.server, client.clock.now
    server.set_transport_buffered(0, now)
    server.open_stream(DATA, now, replay=ReplayBuffer(DATA))
    server.send(DATA, b"A", now)
    assert server.data_to_send(now) == binary(b"A")
    server.set_transport_buffered(0, now)
    server.send(DATA, b"B", now)  # let through, and recorded
    assert server.resume_stream(DATA, 0, now)
    assert server.data_to_send(now) == binary(b"A") + binary(b"B")


def test_a_message_let_through_leaves_before_a_close() -> None:
    client = plain_websocket()
    server, now = client.server, client.clock.now
    server.send(DATA, b"last words", now)  # let through
    server.close(now, reason="bye")
    client.ws.receive_data(server.data_to_send(now))
    got = list(client.ws.events())
    assert [type(event).__name__ for event in got] == ["BytesMessage", "CloseConnection"]
    assert isinstance(got[0], BytesMessage) and got[0].data == b"last words"


def test_linger_counts_from_a_batch_of_only_the_message_let_through() -> None:
    client = plain_websocket(LINGERING)
    server, now = client.server, client.clock.now
    server.open_stream(URGENT, now, credit=0)
    server.send(DATA, b"one", now)  # let through
    server.send(URGENT, b"no credit", now)  # queued, and not eligible
    assert server.data_to_send(now) == binary(b"one")  # take gave nothing: still a batch
    server.set_transport_buffered(0, now)
    server.send(DATA, b"two", now + LINGER / 2)  # waits for company, not let through
    assert server.data_to_send(now + LINGER / 2) == b""
    assert server.data_to_send(now + LINGER) == binary(b"two")
