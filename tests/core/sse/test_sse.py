"""SSE: the encoder's exact bytes, the parser against the WHATWG event-stream rules, limits,
chunk invariance, and encoder -> parser round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diaproto.errors import LocalProtocolError, RemoteProtocolError
from diaproto.events import SseMessage
from diaproto.sse import (
    SSE_RESPONSE_HEADERS,
    SseEvent,
    SseParser,
    encode_comment,
    encode_retry,
)

BOM = b"\xef\xbb\xbf"


def parse(*chunks: bytes, parser: SseParser | None = None) -> list[SseMessage]:
    p = parser if parser is not None else SseParser()
    for chunk in chunks:
        p.feed(chunk)
    return drain(p)


def drain(parser: SseParser) -> list[SseMessage]:
    events = []
    while (event := parser.next_event()) is not None:
        events.append(event)
    return events


# --- encoder -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "wire"),
    [
        (SseEvent("hi"), b"data: hi\n\n"),
        (SseEvent(""), b"data: \n\n"),
        (SseEvent("a\nb"), b"data: a\ndata: b\n\n"),
        (SseEvent("a\rb"), b"data: a\ndata: b\n\n"),
        (SseEvent("a\r\nb"), b"data: a\ndata: b\n\n"),
        (SseEvent("a\n\r\nb\r"), b"data: a\ndata: \ndata: b\ndata: \n\n"),
        (SseEvent(" lead"), b"data:  lead\n\n"),
        (SseEvent("x", event="end"), b"event: end\ndata: x\n\n"),
        (SseEvent("x", id="7"), b"id: 7\ndata: x\n\n"),
        (SseEvent("x", retry=0), b"retry: 0\ndata: x\n\n"),
        (
            SseEvent("AAE=", event="data", id="12", retry=2000),
            b"id: 12\nevent: data\nretry: 2000\ndata: AAE=\n\n",
        ),
        (SseEvent("é", id=""), "id: \ndata: é\n\n".encode()),
    ],
)
def test_event_encoding(event: SseEvent, wire: bytes) -> None:
    assert event.encode() == wire


@pytest.mark.parametrize(
    "kwargs",
    [
        {"event": "a\nb"},
        {"event": "a\r"},
        {"id": "1\n"},
        {"id": "\r1"},
        {"id": "1\x002"},
        {"retry": -1},
    ],
)
def test_event_refuses_what_cannot_be_sent(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        SseEvent("x", **kwargs)  # type: ignore[arg-type]


def test_event_may_name_carry_nul() -> None:
    assert SseEvent("x", event="a\0").encode() == b"event: a\x00\ndata: x\n\n"


def test_comment_and_retry_blocks() -> None:
    assert encode_comment() == b":\n\n"
    assert encode_comment("keep-alive") == b": keep-alive\n\n"
    assert encode_retry(0) == b"retry: 0\n\n"
    assert encode_retry(2500) == b"retry: 2500\n\n"
    for bad in ("a\nb", "a\rb"):
        with pytest.raises(LocalProtocolError):
            encode_comment(bad)
    with pytest.raises(LocalProtocolError):
        encode_retry(-1)
    # Neither dispatches anything; retry sets the reconnection time.
    parser = SseParser()
    assert parse(encode_comment("x"), encode_comment(), encode_retry(750), parser=parser) == []
    assert parser.retry == 750


def test_response_headers() -> None:
    headers = dict(SSE_RESPONSE_HEADERS)
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-store"
    assert headers["x-accel-buffering"] == "no"
    assert all(name == name.lower() for name, _ in SSE_RESPONSE_HEADERS)


# --- parser: WHATWG event stream interpretation ------------------------------------------


def test_simple_event_defaults() -> None:
    parser = SseParser()
    assert parse(b"data: hello\n\n", parser=parser) == [SseMessage("hello", "message", None, None)]
    assert parser.last_event_id is None
    assert parser.retry is None
    assert parser.next_event() is None


def test_several_events_in_one_chunk() -> None:
    events = parse(b"data: 1\n\nevent: add\ndata: 2\n\ndata: 3\n\n")
    assert [(e.data, e.event) for e in events] == [("1", "message"), ("2", "add"), ("3", "message")]


@pytest.mark.parametrize(
    "chunks",
    [
        [BOM + b"data: x\n\n"],
        [BOM, b"data: x\n\n"],
        [b"", b"\xef", b"", b"\xbb", b"\xbf", b"data: x\n\n"],
        [b"\xef\xbb", b"\xbfdata: x\n\n"],
    ],
)
def test_leading_bom_is_skipped(chunks: list[bytes]) -> None:
    assert [e.data for e in parse(*chunks)] == ["x"]


def test_only_the_first_bom_is_skipped() -> None:
    # A second BOM is part of the next line: the field name "\ufeffdata" is unknown.
    assert parse(BOM + BOM + b"data: x\n\ndata: y\n\n") == [SseMessage("y")]


@pytest.mark.parametrize("chunks", [[b"\xef", b"data: x\n\n"], [b"\xef\xbbdata: x\n\n"]])
def test_bytes_that_only_start_like_a_bom_are_kept(chunks: list[bytes]) -> None:
    # They become U+FFFD in front of "data", so the field is unknown and ignored.
    assert parse(*chunks, b"data: y\n\n") == [SseMessage("y")]


@pytest.mark.parametrize("end", [b"\n", b"\r", b"\r\n"])
def test_every_line_end(end: bytes) -> None:
    stream = b"data: a" + end + b"data: b" + end + end + b"data: c" + end + end
    assert [e.data for e in parse(stream)] == ["a\nb", "c"]


def test_mixed_line_ends() -> None:
    assert [e.data for e in parse(b"data: a\rdata: b\ndata: c\r\n\r\n")] == ["a\nb\nc"]
    # LF CR is two line ends (the second one blank), not one.
    assert [e.data for e in parse(b"data: a\n\rdata: b\r\n\n")] == ["a", "b"]


def test_cr_at_chunk_end_then_lf_is_one_line_end() -> None:
    # Were the LF a line of its own, "a" would be dispatched alone.
    assert [e.data for e in parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n")] == ["a\nb"]
    assert [e.data for e in parse(b"data: a\r", b"", b"\n", b"\r\n")] == ["a"]


def test_cr_at_chunk_end_then_other_bytes() -> None:
    assert [e.data for e in parse(b"data: a\r", b"data: b\r", b"\r")] == ["a\nb"]


def test_lone_cr_then_lf_then_blank_line() -> None:
    assert [e.data for e in parse(b"data: a\r\r\n")] == ["a"]


def test_last_event_id_persists_across_events() -> None:
    parser = SseParser()
    events = parse(b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n", parser=parser)
    assert [(e.data, e.id) for e in events] == [("a", "1"), ("b", "1"), ("c", "2")]
    assert parser.last_event_id == "2"


def test_empty_id_resets_the_last_event_id() -> None:
    parser = SseParser()
    events = parse(b"id: 1\ndata: a\n\nid\ndata: b\n\nid:\ndata: c\n\n", parser=parser)
    assert [e.id for e in events] == ["1", "", ""]
    assert parser.last_event_id == ""


def test_id_with_nul_is_ignored() -> None:
    parser = SseParser()
    events = parse(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n", parser=parser)
    assert [e.id for e in events] == ["1", "1"]
    assert parser.last_event_id == "1"


def test_id_of_a_block_without_data_still_counts() -> None:
    parser = SseParser()
    assert parse(b"id: 5\n\n", parser=parser) == []
    assert parser.last_event_id == "5"
    assert parse(b"data: x\n\n", parser=parser) == [SseMessage("x", id="5")]


def test_id_takes_effect_only_when_its_block_ends() -> None:
    """A reconnect must ask again for an event that was cut off before its blank line."""
    parser = SseParser()
    assert parse(b"id: 1\ndata: a\n\nid: 2\ndata: b\n", parser=parser) == [SseMessage("a", id="1")]
    assert parser.last_event_id == "1"
    assert parse(b"\n", parser=parser) == [SseMessage("b", id="2")]
    assert parser.last_event_id == "2"


def test_last_id_in_a_block_wins() -> None:
    assert parse(b"id: 1\nid: 2\ndata: x\n\n") == [SseMessage("x", id="2")]


@pytest.mark.parametrize(
    ("line", "retry"),
    [
        (b"retry: 1500", 1500),
        (b"retry:0", 0),
        (b"retry: 007", 7),
        (b"retry: " + b"0" * 5000 + b"42", 42),
        (b"retry: 18446744073709551615", 2**64 - 1),
        (b"retry: 18446744073709551616", None),  # does not fit 64 bits: ignored
        (b"retry: 99999999999999999999", None),
        (b"retry: " + b"9" * 5000, None),  # int() would refuse this many digits
        (b"retry: -1", None),
        (b"retry: 1.5", None),
        (b"retry: 15a0", None),
        (b"retry: 1e3", None),
        (b"retry:", None),
        (b"retry", None),
        (b"retry:  100", None),  # only one leading space is stripped
        (b"retry: 100 ", None),
        ("retry: ٣".encode(), None),  # a digit, but not an ASCII one
        ("retry: \uff13".encode(), None),  # a fullwidth digit
    ],
)
def test_retry_is_digits_only(line: bytes, retry: int | None) -> None:
    parser = SseParser()
    events = parse(line + b"\ndata: x\n\n", parser=parser)
    assert parser.retry == retry
    assert events == [SseMessage("x", retry=retry)]


def test_retry_belongs_to_its_block_but_the_reconnection_time_stays() -> None:
    parser = SseParser()
    events = parse(b"retry: 10\ndata: a\n\ndata: b\n\nretry: 20\n\n", parser=parser)
    assert [e.retry for e in events] == [10, None]
    assert parser.retry == 20


def test_events_without_data_are_not_dispatched() -> None:
    # The event type of an undispatched block does not leak into the next one.
    assert parse(b"event: x\n\nid: 3\n\nretry: 5\n\n\n\n", b"data: y\n\n") == [
        SseMessage("y", id="3")
    ]


def test_default_event_type_is_message() -> None:
    events = parse(b"event:\ndata: a\n\nevent: \ndata: b\n\nevent: end\ndata: c\n\n")
    assert [e.event for e in events] == ["message", "message", "end"]


def test_event_type_resets_after_each_dispatch() -> None:
    assert [e.event for e in parse(b"event: a\ndata: 1\n\ndata: 2\n\n")] == ["a", "message"]


def test_comments_are_ignored() -> None:
    stream = b": hello\n:\ndata: a\n: in the middle\ndata: b\n:data: no\n\n"
    assert parse(stream) == [SseMessage("a\nb")]
    assert parse(b": just a comment\n\n") == []


def test_field_without_colon() -> None:
    assert parse(b"data\n\n") == [SseMessage("")]
    assert parse(b"data\ndata\n\n") == [SseMessage("\n")]
    assert parse(b"event\ndata: x\n\n") == [SseMessage("x", event="message")]


def test_single_leading_space_is_stripped() -> None:
    events = parse(b"data:nospace\n\ndata: one\n\ndata:  two\n\ndata:\t tab\n\n")
    assert [e.data for e in events] == ["nospace", "one", " two", "\t tab"]
    assert parse(b"event:  spaced\ndata: x\n\n")[0].event == " spaced"
    assert parse(b"id:  7\ndata: x\n\n")[0].id == " 7"


def test_empty_data_value_is_an_event() -> None:
    assert parse(b"data:\n\n") == [SseMessage("")]
    assert parse(b"data: \n\n") == [SseMessage("")]
    assert parse(b"data:\ndata:\n\n") == [SseMessage("\n")]


def test_only_the_first_colon_separates() -> None:
    assert parse(b"data: a: b:c\n\n") == [SseMessage("a: b:c")]


def test_unknown_and_differently_cased_fields_are_ignored() -> None:
    assert parse(b"foo: bar\nData: no\nDATA: no\n data: no\ndata: yes\n\n") == [SseMessage("yes")]


def test_incomplete_final_block_is_never_dispatched() -> None:
    parser = SseParser()
    assert parse(b"data: a\n\ndata: b\n", b"data: c", parser=parser) == [SseMessage("a")]


def test_invalid_utf8_is_replaced() -> None:
    assert parse(b"data: a\xffb\xe2\x82\n\n") == [SseMessage("a\ufffdb\ufffd")]


def test_utf8_split_across_chunks() -> None:
    raw = "data: 你好\n\n".encode()
    assert parse(raw[:7], raw[7:9], raw[9:]) == [SseMessage("你好")]


def test_nul_in_data_is_kept() -> None:
    assert parse(b"data: a\x00b\n\n") == [SseMessage("a\x00b")]


# --- limits ------------------------------------------------------------------------------


def test_line_at_the_limit_is_accepted() -> None:
    line = b"data: " + b"x" * 94  # 100 bytes, its end not counted
    assert parse(line + b"\r\n\r\n", parser=SseParser(max_line=100))[0].data == "x" * 94
    assert parse(line, b"\n\n", parser=SseParser(max_line=100))[0].data == "x" * 94


@pytest.mark.parametrize(
    "chunks",
    [
        [b"data: " + b"x" * 95 + b"\n\n"],  # a complete long line in one chunk
        [b"data: " + b"x" * 95],  # a long line still waiting for its end
        [b"data: " + b"x" * 50, b"x" * 45],
        [b": " + b"c" * 99 + b"\n"],  # comments count too
    ],
)
def test_line_over_the_limit_raises(chunks: list[bytes]) -> None:
    parser = SseParser(max_line=100)
    with pytest.raises(RemoteProtocolError):
        for chunk in chunks:
            parser.feed(chunk)


def test_events_before_a_long_line_are_kept() -> None:
    parser = SseParser(max_line=20)
    with pytest.raises(RemoteProtocolError):
        parser.feed(b"data: a\n\ndata: " + b"x" * 30 + b"\n\n")
    assert drain(parser) == [SseMessage("a")]


def test_event_at_the_limit_is_accepted() -> None:
    # Two lines of 4 value bytes, each counted with its LF: 10 bytes.
    parser = SseParser(max_event=10)
    assert parse(b"data: abcd\ndata:abcd\n\n", parser=parser) == [SseMessage("abcd\nabcd")]
    # The limit is per event, not per stream.
    assert parse(b"data: abcd\ndata: abcd\n\n", parser=parser) == [SseMessage("abcd\nabcd")]


@pytest.mark.parametrize(
    "stream",
    [
        b"data: abcd\ndata: abcde\n\n",
        b"data: abcdefghijk\n\n",
        "data: éééé\ndata: é\n\n".encode(),  # bytes, not characters: 8 + 1 + 2 + 1
        b"data\n" * 11,  # each empty value still costs its LF
    ],
)
def test_event_over_the_limit_raises(stream: bytes) -> None:
    parser = SseParser(max_event=10)
    with pytest.raises(RemoteProtocolError):
        parser.feed(stream)


# --- properties --------------------------------------------------------------------------

line_ends = st.sampled_from([b"\n", b"\r", b"\r\n"])
field_lines = st.one_of(
    st.builds(
        lambda name, sep, value: name + sep + value,
        st.sampled_from([b"data", b"event", b"id", b"retry", b"", b"x", b":"]),
        st.sampled_from([b"", b":", b": ", b":  "]),
        st.one_of(
            st.binary(max_size=8).filter(lambda b: b"\r" not in b and b"\n" not in b),
            st.sampled_from([b"12", b"0", b"1\x002", "é".encode(), b"\xef\xbb\xbf"]),
        ),
    ),
    st.just(b""),
)
sse_streams = st.one_of(
    st.lists(st.tuples(field_lines, line_ends), max_size=20).map(
        lambda lines: b"".join(a + b for a, b in lines)
    ),
    st.binary(max_size=200),
).flatmap(lambda body: st.sampled_from([body, BOM + body]))


def _outcome(
    chunks: list[bytes], max_line: int = 1 << 20, max_event: int = 16 << 20
) -> tuple[object, ...]:
    parser = SseParser(max_line=max_line, max_event=max_event)
    error = None
    try:
        for chunk in chunks:
            parser.feed(chunk)
    except RemoteProtocolError as exc:
        error = str(exc)
    return drain(parser), parser.last_event_id, parser.retry, error


@given(sse_streams, st.lists(st.integers(0, 250), max_size=6))
def test_any_split_gives_the_same_events(stream: bytes, cuts: list[int]) -> None:
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert b"".join(chunks) == stream
    assert _outcome(chunks) == _outcome([stream])
    one_by_one = [stream[i : i + 1] for i in range(len(stream))]
    assert _outcome(one_by_one) == _outcome([stream])


@given(sse_streams, st.integers(0, 250), st.integers(1, 12), st.integers(1, 30))
def test_any_split_gives_the_same_limit_errors(
    stream: bytes, cut: int, max_line: int, max_event: int
) -> None:
    whole = _outcome([stream], max_line=max_line, max_event=max_event)
    split = _outcome([stream[:cut], stream[cut:]], max_line=max_line, max_event=max_event)
    assert split[0] == whole[0]
    assert (split[3] is None) == (whole[3] is None)


no_breaks = st.text().filter(lambda s: "\r" not in s and "\n" not in s)
sse_events = st.builds(
    SseEvent,
    st.text(),
    st.none() | no_breaks,
    st.none() | no_breaks.filter(lambda s: "\0" not in s),
    st.none() | st.integers(0, 2**64 - 1),
)


@given(st.lists(sse_events, min_size=1, max_size=5), st.integers(0, 10_000))
def test_encoder_parser_round_trip(events: list[SseEvent], cut: int) -> None:
    stream = b"".join(e.encode() for e in events)
    got = parse(stream[:cut], stream[cut:])
    expected = []
    last_id: str | None = None
    for e in events:
        last_id = e.id if e.id is not None else last_id
        data = e.data.replace("\r\n", "\n").replace("\r", "\n")
        expected.append(SseMessage(data, e.event or "message", last_id, e.retry))
    assert got == expected


def test_a_reconnecting_parser_starts_from_its_last_event_id() -> None:
    parser = SseParser(last_event_id="41")
    assert parser.last_event_id == "41"
    # Blocks without an id (retry, heartbeats, plain events) keep it.
    events = parse(b"retry: 100\n\n:\n\ndata: a\n\n", parser=parser)
    assert events == [SseMessage("a", id="41")]
    assert parser.last_event_id == "41"
    assert parse(b"id: 42\ndata: b\n\n", parser=parser) == [SseMessage("b", id="42")]
