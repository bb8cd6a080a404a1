"""What the core counts for an access log: the bytes ``data_to_send`` handed out and the
status of the latest response head (plain counters: no clock, no I/O)."""

from __future__ import annotations

from diaproto.events import Request
from diaproto.server import ServerConnection


def test_bytes_and_status_of_plain_answers() -> None:
    conn = ServerConnection(0.0)
    assert (conn.bytes_sent, conn.bytes_produced, conn.response_status) == (0, 0, None)
    conn.receive_data(b"GET /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", 0.0)
    assert isinstance(conn.next_event(), Request)
    conn.respond(404, (), b"nope", now=0.0)
    produced = conn.bytes_produced
    assert conn.response_status == 404 and produced > 4 and conn.bytes_sent == 0
    data = conn.data_to_send(0.0)
    assert conn.bytes_sent == len(data) == produced
    conn.receive_data(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
    assert isinstance(conn.next_event(), Request)
    conn.respond(200, (), b"ok", now=0.0)
    assert conn.response_status == 200
    assert conn.bytes_sent + len(conn.data_to_send(0.0)) == conn.bytes_produced
