"""Hypothesis strategies for property-testing code built on diaproto."""

from __future__ import annotations

import itertools

from hypothesis import strategies as st

from diaproto.sse import SseEvent
from diaproto.wire import MAX_ID, CancelStream, ClientMessage, GrantCredit, OpenStream, ResumeStream


@st.composite
def splits(draw: st.DrawFn, data: bytes, max_pieces: int = 16) -> list[bytes]:
    """``data`` cut at arbitrary points: feeding the pieces must equal feeding it whole."""
    if not data:
        return []
    count = draw(st.integers(0, min(max_pieces - 1, len(data) - 1)))
    if count == 0:
        return [data]
    cuts = sorted(draw(st.sets(st.integers(1, len(data) - 1), min_size=count, max_size=count)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


ids = st.integers(0, MAX_ID)
small_ids = st.integers(0, 16)

#: Client-to-server wire-protocol messages of every kind.
client_messages: st.SearchStrategy[ClientMessage] = st.one_of(
    st.builds(
        OpenStream,
        small_ids,
        text=st.text(max_size=200),
        voice=st.none() | st.sampled_from(["S1", "S2"]),
        options=st.dictionaries(
            st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=3
        ),
        credit=st.none() | ids,
    ),
    st.builds(CancelStream, small_ids),
    st.builds(GrantCredit, small_ids, ids),
    st.builds(ResumeStream, small_ids, ids, st.none() | st.text(max_size=16)),
)

#: SSE events, including data with every kind of line break.
sse_events: st.SearchStrategy[SseEvent] = st.builds(
    SseEvent,
    data=st.text(st.characters(blacklist_categories=["Cs"]), max_size=100),
    event=st.none() | st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True),
    id=st.none() | st.from_regex(r"[0-9a-z:-]{1,12}", fullmatch=True),
    retry=st.none() | st.integers(0, 60_000),
)

#: Chunk payloads for data streams.
chunks = st.binary(max_size=2048)

#: A sequence of (stream id, payload) sends across a few streams.
send_sequences = st.lists(st.tuples(st.integers(1, 4), chunks), max_size=40)
