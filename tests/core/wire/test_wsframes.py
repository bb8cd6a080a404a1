"""wsframes: encode_frame against wsproto's own parser, and MessageAssembler."""

from __future__ import annotations

import pytest
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, TextMessage

from diaproto.errors import CloseCode, RemoteProtocolError
from diaproto.wsframes import OP_BINARY, OP_TEXT, MessageAssembler, encode_frame


def parse_as_client(data: bytes) -> list[object]:
    """wsproto's client-side parser on server frames."""
    conn = Connection(ConnectionType.CLIENT)
    conn.receive_data(data)
    return list(conn.events())


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_binary_frame_matches_wsproto(length: int) -> None:
    payload = bytes(i % 251 for i in range(length))
    frame = encode_frame(OP_BINARY, payload)
    assert frame == Connection(ConnectionType.SERVER).send(BytesMessage(data=payload))
    (event,) = parse_as_client(frame)
    assert isinstance(event, BytesMessage)
    assert event.data == payload
    assert event.message_finished


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
def test_text_frame_matches_wsproto(length: int) -> None:
    text = "a" * length
    frame = encode_frame(OP_TEXT, text.encode())
    assert frame == Connection(ConnectionType.SERVER).send(TextMessage(data=text))
    (event,) = parse_as_client(frame)
    assert isinstance(event, TextMessage)
    assert event.data == text


@pytest.mark.parametrize(
    ("length", "header_size"), [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)]
)
def test_header_sizes(length: int, header_size: int) -> None:
    frame = encode_frame(OP_BINARY, b"x" * length)
    assert len(frame) == header_size + length
    assert frame[0] == 0x82  # FIN + binary
    assert frame[1] & 0x80 == 0  # never masked


def test_assembler_whole_messages() -> None:
    a = MessageAssembler(10)
    assert a.feed(TextMessage(data="hello")) == "hello"
    whole = a.feed(BytesMessage(data=bytearray(b"\x00\x01")))
    assert whole == b"\x00\x01"
    assert type(whole) is bytes


def test_assembler_fragments() -> None:
    a = MessageAssembler(10)
    assert a.feed(TextMessage(data="ab", message_finished=False)) is None
    assert a.feed(TextMessage(data="cd", message_finished=False)) is None
    assert a.feed(TextMessage(data="e", message_finished=True)) == "abcde"
    assert a.feed(BytesMessage(data=b"\x01", message_finished=False)) is None
    assert a.feed(BytesMessage(data=bytearray(b"\x02"), message_finished=True)) == b"\x01\x02"
    assert a.feed(TextMessage(data="x" * 10)) == "x" * 10  # the count restarts per message


def test_assembler_text_counts_code_points() -> None:
    a = MessageAssembler(3)
    assert a.feed(TextMessage(data="\u00e9\u00e9\u00e9")) == "\u00e9\u00e9\u00e9"


@pytest.mark.parametrize(
    "events",
    [
        [TextMessage(data="x" * 11)],
        [BytesMessage(data=b"x" * 6, message_finished=False), BytesMessage(data=b"x" * 5)],
        [TextMessage(data="x" * 10, message_finished=False), TextMessage(data="y")],
    ],
)
def test_assembler_oversize(events: list[TextMessage | BytesMessage]) -> None:
    a = MessageAssembler(10)
    *head, last = events
    for event in head:
        assert a.feed(event) is None
    with pytest.raises(RemoteProtocolError) as info:
        a.feed(last)
    assert info.value.close_code == 1009
    assert info.value.close_code is CloseCode.MESSAGE_TOO_BIG
