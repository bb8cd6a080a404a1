"""The session asking the client (sampling, elicitation, roots): our requests, the replies
that come back, and the questions a client cannot answer left unasked."""

from __future__ import annotations

import json

from mcp_session_support import call, events, modern, new_session, outbound, ready, send

from diaproto.mcp.events import ClientReply
from diaproto.mcp.protocol import Kind

# --- asking the client: sampling, elicitation, roots -----------------------------------------


def test_requests_to_the_client_and_their_replies() -> None:
    session = ready({"sampling": {}, "elicitation": {}})
    call(session, "c")
    asked = session.request("sampling/createMessage", {"maxTokens": 5}, related="c")
    assert asked is not None
    [message] = outbound(session)
    assert (message.kind, message.related, message.final) == (Kind.CONTROL, "c", False)
    body = json.loads(message.text)
    assert body == {
        "jsonrpc": "2.0",
        "id": asked,
        "method": "sampling/createMessage",
        "params": {"maxTokens": 5},
    }
    send(session, id=asked, result={"content": {"type": "text", "text": "hi"}})
    assert events(session) == [
        ClientReply(
            asked, "sampling/createMessage", "c", {"content": {"type": "text", "text": "hi"}}
        )
    ]
    send(session, id=asked, result={})  # answered already: nothing waits for it
    assert events(session) == []
    second = session.request("elicitation/create")
    assert second is not None and second != asked
    outbound(session)
    send(session, id=second, error={"code": -1, "message": "declined"})
    [reply] = events(session)
    assert isinstance(reply, ClientReply)
    assert reply.result is None and reply.error is not None and reply.error.message == "declined"
    third = session.request("ping")
    assert third is not None
    outbound(session)
    send(session, id=third, result=[1])  # not an object: an empty result
    assert events(session) == [ClientReply(third, "ping", None, {})]


def test_the_client_is_not_asked_what_it_cannot_answer() -> None:
    session = ready({"sampling": {}})
    assert session.request("elicitation/create") is None  # not declared
    assert session.request("roots/list") is None
    assert session.request("sampling/createMessage", related="gone") is None  # no such call
    assert outbound(session) == []
    fresh = new_session()
    assert fresh.request("ping") is None  # not initialized
    assert modern({"sampling": {}}).request("sampling/createMessage") is None  # 2026: MRTR
    asked = session.request("sampling/createMessage")
    session.close()
    send(session, id=asked, result={})
    assert events(session) == []
