"""One MCP session, server side, as a state machine: messages in, events and messages out.

The session answers what the protocol itself decides (``initialize``, ``ping``, the list
methods, ``logging/setLevel``, resource subscriptions, unknown methods, malformed params)
and hands the application only what it must decide, as the events of
:mod:`diaproto.mcp.events` (``dispatch`` says which request goes where). The application
answers a request with :meth:`McpSession.respond` / :meth:`McpSession.fail`, streams with
:meth:`McpSession.progress`, :meth:`McpSession.partial_result` and :meth:`McpSession.log`,
and asks the client with :meth:`McpSession.request` (sampling, elicitation, roots; not at
2026-07-28, which has input-required results instead: ``mrtr``). Every message the session
produces comes out of :meth:`McpSession.next_outbound` labelled with its
:class:`~diaproto.mcp.protocol.Kind` (how to schedule it) and the request it belongs to
(which stream carries it).

Guarantees: progress values strictly increase per request; nothing about a request is sent
after its response; a cancelled request gets no response; ``initialize`` cannot be
cancelled; a response to an unknown or finished request is refused.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from diaproto.errors import LocalProtocolError
from diaproto.mcp.asking import Questions
from diaproto.mcp.calls import Call, as_token
from diaproto.mcp.dispatch import Answer, Decision, HandOff, Refusal, route
from diaproto.mcp.events import CallCancelled, McpEvent
from diaproto.mcp.features import Features, Tool
from diaproto.mcp.jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    JsonRpcErrorResponse,
    JsonRpcNotification,
    JsonRpcRequest,
    JsonRpcResponse,
    Message,
    RequestId,
    is_finite_number,
)
from diaproto.mcp.mrtr import retry_problem
from diaproto.mcp.negotiation import (
    APPLICATION_CACHEABLE,
    ServerInfo,
    discover_result,
    initialize_result,
    not_cached,
    server_capabilities,
    shared_cache_hints,
    stamped,
)
from diaproto.mcp.outbox import Outbound, Outbox
from diaproto.mcp.protocol import (
    CAPABILITY_OF_CLIENT_METHOD,
    LOG_LEVELS,
    META_LOG_LEVEL,
    MODERN_VERSIONS,
    PARTIAL_RESULT_CAPABILITY,
    PARTIAL_RESULT_METHOD,
    Kind,
    negotiate_version,
)


class SessionState(Enum):
    NEW = "new"  # waiting for initialize
    INITIALIZING = "initializing"  # answered initialize, waiting for notifications/initialized
    READY = "ready"
    CLOSED = "closed"


@dataclass(eq=False)
class McpSession:
    """The protocol state of one client. Pure: no I/O, no clock."""

    info: ServerInfo
    tools: tuple[Tool, ...] = ()
    state: SessionState = SessionState.NEW
    protocol_version: str | None = None
    client_capabilities: dict[str, Any] = field(default_factory=dict)
    client_info: dict[str, Any] = field(default_factory=dict)
    log_level: str | None = "info"  # None: send no log messages
    features: Features = field(default_factory=Features)
    subscriptions: set[str] = field(default_factory=set)  # resource URIs (resources/subscribe)
    _in_flight: dict[RequestId, Call] = field(default_factory=dict)
    _questions: Questions = field(default_factory=Questions)
    _events: deque[McpEvent] = field(default_factory=deque)
    _outbox: Outbox = field(default_factory=Outbox)

    @classmethod
    def ready(
        cls,
        info: ServerInfo,
        tools: tuple[Tool, ...],
        protocol_version: str,
        client_capabilities: dict[str, Any],
        features: Features | None = None,
    ) -> McpSession:
        """A session that needs no handshake (2026-07-28: each request says who it is)."""
        session = cls(
            info,
            tools,
            SessionState.READY,
            protocol_version,
            log_level=None,
            features=features or Features(),
        )
        session.client_capabilities = client_capabilities
        return session

    @property
    def modern(self) -> bool:
        """Speaking 2026-07-28: no handshake, results carry the server's identity."""
        return self.protocol_version in MODERN_VERSIONS

    # --- inbound ---------------------------------------------------------------------------

    def receive(self, message: Message) -> None:
        """Take one message from the client. Never raises for what the client sent."""
        if self.state is SessionState.CLOSED:
            return
        match message:
            case JsonRpcRequest():
                self._request(message)
            case JsonRpcNotification():
                self._notification(message)
            case _:  # a response: the client answering a request of ours
                self._reply(message)

    def refuse(self, error: JsonRpcErrorResponse) -> None:
        """Send an error for a message the transport could not even parse."""
        self._outbox.send(error, Kind.RESPONSE, error.id, final=True)

    def next_event(self) -> McpEvent | None:
        return self._events.popleft() if self._events else None

    def next_outbound(self) -> Outbound | None:
        return self._outbox.next()

    @property
    def last_question_id(self) -> int:
        """The id of our latest request to the client (0: none yet)."""
        return self._questions.last_id

    @property
    def in_flight(self) -> tuple[RequestId, ...]:
        return tuple(self._in_flight)

    @property
    def partial_results(self) -> bool:
        """The client declared SEP-2998's capability (top level, or as experimental)."""
        experimental = self.client_capabilities.get("experimental")
        return PARTIAL_RESULT_CAPABILITY in self.client_capabilities or (
            isinstance(experimental, dict) and PARTIAL_RESULT_CAPABILITY in experimental
        )

    def _request(self, request: JsonRpcRequest) -> None:
        method, params = request.method, request.params or {}
        if self.modern and not self._modern_request(request.id, params):
            return
        if request.id in self._in_flight:
            # Not the final word on that id: the call in flight keeps its stream and answer.
            error = JsonRpcErrorResponse(
                request.id, INVALID_REQUEST, f"request id {request.id!r} is in use"
            )
            self._outbox.send(error, Kind.RESPONSE)
            return
        if method == "ping":
            self._result(request.id, {})
        elif method == "initialize":
            self._initialize(request.id, params)
        elif method == "server/discover" and self.modern:
            self._result(request.id, discover_result(self.info, self._capabilities()))
        elif self.state is SessionState.NEW:
            self._error(request.id, INVALID_REQUEST, "the session is not initialized")
        elif method == "logging/setLevel":
            self._set_level(request.id, params)
        else:
            self._apply(request.id, route(request.id, method, params, self))

    def _modern_request(self, request_id: RequestId, params: dict[str, Any]) -> bool:
        """2026-07-28: a request opts in to logs with its level (none without one), and a
        multi-round retry (SEP-2322) must be whole; False when it was refused."""
        meta = params.get("_meta")
        level = meta.get(META_LOG_LEVEL) if isinstance(meta, dict) else None
        self.log_level = level if level in LOG_LEVELS else None
        problem = retry_problem(params)
        if problem is not None:
            self._error(request_id, INVALID_PARAMS, problem)
            return False
        return True

    def _apply(self, request_id: RequestId, decision: Decision) -> None:
        match decision:
            case Answer(result, cacheable):
                hints = shared_cache_hints(modern=self.modern) if cacheable else {}
                self._result(request_id, {**result, **hints})
            case Refusal(code, message, data):
                self._error(request_id, code, message, data)
            case HandOff(event, call):
                self._in_flight[request_id] = call
                self._events.append(event)
            case _:  # a Subscription, the last kind left (mypy checks the narrowing)
                if decision.subscribe:
                    self.subscriptions.add(decision.uri)
                else:
                    self.subscriptions.discard(decision.uri)
                self._result(request_id, {})

    def _set_level(self, request_id: RequestId, params: dict[str, Any]) -> None:
        level = params.get("level")
        if level not in LOG_LEVELS:
            self._error(request_id, INVALID_PARAMS, f"level must be one of {LOG_LEVELS}")
        else:
            self.log_level = str(level)
            self._result(request_id, {})

    def _initialize(self, request_id: RequestId, params: dict[str, Any]) -> None:
        if self.state is not SessionState.NEW:
            self._error(request_id, INVALID_REQUEST, "the session is already initialized")
            return
        capabilities, client = params.get("capabilities"), params.get("clientInfo")
        if not isinstance(params.get("protocolVersion"), str):
            self._error(request_id, INVALID_PARAMS, "protocolVersion must be a string")
            return
        if not isinstance(capabilities, dict) or not isinstance(client, dict):
            self._error(request_id, INVALID_PARAMS, "capabilities and clientInfo are objects")
            return
        self.protocol_version = negotiate_version(params["protocolVersion"])
        self.client_capabilities = capabilities
        self.client_info = client
        self.state = SessionState.INITIALIZING
        answer = initialize_result(self.info, self.protocol_version, self._capabilities())
        self._result(request_id, answer)

    def _notification(self, note: JsonRpcNotification) -> None:
        params = note.params or {}
        if note.method == "notifications/initialized":
            if self.state is SessionState.INITIALIZING:
                self.state = SessionState.READY
        elif note.method == "notifications/cancelled":
            request_id = params.get("requestId")
            # Unknown or finished ids are normal (the response and the cancel crossed).
            # as_token refuses a bool, which would otherwise equal (and cancel) id 1 or 0.
            if as_token(request_id) is not None and request_id in self._in_flight:
                del self._in_flight[request_id]
                reason = params.get("reason")
                self._events.append(
                    CallCancelled(request_id, reason if isinstance(reason, str) else None)
                )
        # Any other notification (progress, roots changed...) needs nothing from us.

    def _reply(self, reply: JsonRpcResponse | JsonRpcErrorResponse) -> None:
        event = self._questions.answer(reply)
        if event is not None:
            self._events.append(event)

    # --- outbound: the application's side --------------------------------------------------

    def respond(self, request_id: RequestId, result: dict[str, Any]) -> bool:
        """Answer a call; False (and nothing sent) if it was cancelled or already answered."""
        call = self._in_flight.pop(request_id, None)
        if call is None:
            return False
        if self.modern and call.method in APPLICATION_CACHEABLE:
            result = not_cached(result)
        self._result(request_id, result, call.progress_token)
        return True

    def request(
        self, method: str, params: dict[str, Any] | None = None, related: RequestId | None = None
    ) -> RequestId | None:
        """Ask the client something (``sampling/createMessage``, ``elicitation/create``,
        ``roots/list``...); its answer comes back as a :class:`ClientReply`. ``related``: the
        client's request this is for (it travels on that request's stream).

        None, and nothing sent, when the client cannot be asked: it did not declare the
        capability the method needs, the session is not ready, ``related`` is finished, or
        the revision is 2026-07-28 (which asks through input-required results instead)."""
        needed = CAPABILITY_OF_CLIENT_METHOD.get(method)
        if (
            self.modern
            or self.state is not SessionState.READY
            or (needed is not None and needed not in self.client_capabilities)
            or (related is not None and related not in self._in_flight)
        ):
            return None
        request = self._questions.ask(method, params, related)
        self._outbox.send(request, Kind.CONTROL, related)
        return request.id

    def resource_updated(self, uri: str) -> bool:
        """``notifications/resources/updated`` if the client subscribed to ``uri``."""
        if uri not in self.subscriptions or self.state is SessionState.CLOSED:
            return False
        note = JsonRpcNotification("notifications/resources/updated", {"uri": uri})
        self._outbox.send(note, Kind.CONTROL)
        return True

    def fail(self, request_id: RequestId, code: int, message: str, data: Any = None) -> bool:
        """Answer a call with a JSON-RPC error; False if it was cancelled or answered."""
        call = self._in_flight.pop(request_id, None)
        if call is None:
            return False
        self._outbox.error(request_id, code, message, data, call.progress_token)
        return True

    def progress(
        self,
        request_id: RequestId,
        progress: float,
        total: float | None = None,
        message: str | None = None,
    ) -> bool:
        """Report progress on a call that asked for it; values must strictly increase.

        False when nothing was sent: no token, a finished call, or a value not above the last.
        """
        call = self._in_flight.get(request_id)
        if not is_finite_number(progress):
            raise LocalProtocolError("progress must be a finite number")
        params = None if call is None else call.progress(progress, total, message)
        if call is None or params is None:
            return False
        note = JsonRpcNotification("notifications/progress", params)
        self._outbox.send(note, Kind.PROGRESS, request_id, call.progress_token)
        return True

    def partial_result(self, request_id: RequestId, content: list[dict[str, Any]]) -> bool:
        """Stream part of a call's output (SEP-2998) to a client that opted the call in."""
        call = self._in_flight.get(request_id)
        params = None if call is None else call.partial_result(content)
        if params is None:
            return False
        self._outbox.send(
            JsonRpcNotification(PARTIAL_RESULT_METHOD, params), Kind.PARTIAL, request_id
        )
        return True

    def log(
        self, level: str, data: Any, logger: str | None = None, related: RequestId | None = None
    ) -> bool:
        """``notifications/message`` if ``level`` is at or above what the client asked for;
        ``related``: the request it is about (it travels on that request's stream)."""
        if level not in LOG_LEVELS:
            raise LocalProtocolError(f"level must be one of {LOG_LEVELS}")
        if (
            self.state is SessionState.CLOSED
            or self.log_level is None
            or LOG_LEVELS.index(level) < LOG_LEVELS.index(self.log_level)
        ):
            return False
        params: dict[str, Any] = {"level": level, "data": data}
        if logger is not None:
            params["logger"] = logger
        note = JsonRpcNotification("notifications/message", params)
        self._outbox.send(note, Kind.LOG, related)
        return True

    def close(self) -> None:
        """The session ended (DELETE, expiry, the connection went away): calls are cancelled."""
        if self.state is SessionState.CLOSED:
            return
        self.state = SessionState.CLOSED
        for request_id in list(self._in_flight):
            self._events.append(CallCancelled(request_id, "the session ended"))
        self._in_flight.clear()
        self._questions.clear()
        self._outbox.clear()

    # --- helpers ---------------------------------------------------------------------------

    def _capabilities(self) -> dict[str, Any]:
        return server_capabilities(self.features, modern=self.modern)

    def _result(
        self, request_id: RequestId, result: dict[str, Any], token: str | int | None = None
    ) -> None:
        self._outbox.result(
            request_id, stamped(self.info, result) if self.modern else result, token
        )

    def _error(self, request_id: RequestId, code: int, message: str, data: Any = None) -> None:
        self._outbox.error(request_id, code, message, data)
