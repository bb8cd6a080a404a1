"""One MCP session, server side, as a state machine: messages in, events and messages out.

The session answers what the protocol itself decides (``initialize``, ``ping``, the list
methods, ``logging/setLevel``, resource subscriptions, unknown methods, malformed params)
and hands the application only what it must decide: :class:`ToolCall`,
:class:`ResourceRead`, :class:`PromptGet`, :class:`CompletionRequest`,
:class:`CallCancelled`, and :class:`ClientReply` (the client answered one of our requests).
The application answers a request with :meth:`McpSession.respond` / :meth:`McpSession.fail`,
streams with :meth:`McpSession.progress`, :meth:`McpSession.partial_result` and
:meth:`McpSession.log`, and asks the client with :meth:`McpSession.request` (sampling,
elicitation, roots; not at 2026-07-28, which has input-required results instead: ``mrtr``).
Every message the session produces comes out of :meth:`McpSession.next_outbound` labelled with its
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
from diaproto.mcp.features import Features
from diaproto.mcp.jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    MISSING_CLIENT_CAPABILITY,
    JsonRpcErrorResponse,
    JsonRpcNotification,
    JsonRpcRequest,
    JsonRpcResponse,
    Message,
    RequestId,
    encode_message,
    is_finite_number,
)
from diaproto.mcp.mrtr import retry_problem
from diaproto.mcp.protocol import (
    CAPABILITY_OF_CLIENT_METHOD,
    LOG_LEVELS,
    META_LOG_LEVEL,
    META_SERVER_INFO,
    MODERN_VERSIONS,
    PARTIAL_RESULT_CAPABILITY,
    PARTIAL_RESULT_METHOD,
    PARTIAL_RESULT_TOKEN,
    Kind,
    negotiate_version,
)
from diaproto.mcp.tasks import TASK_METHODS, TASKS_EXTENSION, negotiated

CACHE_TTL_MS = 60_000  # how long a 2026-07-28 client may reuse discover and the lists
#: 2026-07-28 results that carry caching hints (SEP-2549). The lists and discover are fixed
#: for the server's life; what the application answers (resources/read) is stamped "do not
#: reuse" unless it says otherwise.
APPLICATION_CACHEABLE = ("resources/read",)


class SessionState(Enum):
    NEW = "new"  # waiting for initialize
    INITIALIZING = "initializing"  # answered initialize, waiting for notifications/initialized
    READY = "ready"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool the server offers: ``input_schema`` is a JSON Schema object."""

    name: str
    description: str
    input_schema: dict[str, Any]
    title: str | None = None
    annotations: dict[str, Any] | None = None  # hints: readOnlyHint, streamingHint (SEP-2998)
    #: SEP-2663 tasks: None (never a task), "optional" (a task for a client that declared
    #: the extension, else run as a plain call) or "required" (others get -32021).
    task_support: str | None = None

    def describe(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "inputSchema": self.input_schema,
        }
        if self.title is not None:
            body["title"] = self.title
        if self.annotations is not None:
            body["annotations"] = self.annotations
        return body


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The client called a tool; answer with ``respond``/``fail`` (once)."""

    request_id: RequestId
    name: str
    arguments: dict[str, Any]
    progress_token: str | int | None
    partial_token: str | int | None  # set: the client takes partial results (SEP-2998)
    #: The request's whole ``params``: ``_meta``, and at 2026-07-28 a retried call's
    #: ``inputResponses`` and ``requestState`` (see ``mrtr``).
    params: dict[str, Any] = field(default_factory=dict)
    #: The call may become a task (SEP-2663): the tool supports tasks and the request's
    #: client declared the extension. The application decides (see ``apps/mcp/catalog``).
    task: bool = False


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """``tasks/get``, ``tasks/update`` or ``tasks/cancel`` from a client that declared the
    tasks extension, for a string ``task_id`` (the application's store decides the rest)."""

    request_id: RequestId
    method: str
    task_id: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResourceRead:
    """``resources/read`` of a URI the server offers (a resource or a template's match)."""

    request_id: RequestId
    uri: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PromptGet:
    """``prompts/get`` of an offered prompt, its required arguments present."""

    request_id: RequestId
    name: str
    arguments: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """``completion/complete``: ``ref`` (a prompt or resource template), ``argument``
    ``{name, value}``, and ``context`` (arguments already given) as the client sent them."""

    request_id: RequestId
    ref: dict[str, Any]
    argument: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClientReply:
    """The client answered a request of ours (:meth:`McpSession.request`)."""

    request_id: RequestId  # ours
    method: str
    related: RequestId | None  # the client's request it was sent for
    result: dict[str, Any] | None  # None: an error
    error: JsonRpcErrorResponse | None = None


@dataclass(frozen=True, slots=True)
class CallCancelled:
    """The client cancelled a call (or the session ended under it): stop its work."""

    request_id: RequestId
    reason: str | None


@dataclass(frozen=True, slots=True)
class Outbound:
    """One message to send: its JSON text, how to schedule it, the request it is about."""

    text: str
    kind: Kind
    related: RequestId | None = None
    #: Progress: the token it coalesces under. A final response: the call's token, so the
    #: channel withdraws a report still queued (nothing about a request after its response).
    progress_token: str | int | None = None
    final: bool = False  # the response that ends ``related``
    error_code: int | None = None  # set on an error response (an HTTP status may follow it)


McpEvent = (
    ToolCall
    | ResourceRead
    | PromptGet
    | CompletionRequest
    | TaskRequest
    | CallCancelled
    | ClientReply
)


@dataclass(slots=True)
class _InFlight:
    method: str
    progress_token: str | int | None = None
    last_progress: float | None = None
    partial_token: str | int | None = None
    partial_seq: int = 0


@dataclass(frozen=True, slots=True)
class ServerInfo:
    name: str
    version: str
    instructions: str | None = None


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
    _in_flight: dict[RequestId, _InFlight] = field(default_factory=dict)
    _asked: dict[RequestId, tuple[str, RequestId | None]] = field(default_factory=dict)
    _next_request: int = 0
    _events: deque[McpEvent] = field(default_factory=deque)
    _outbound: deque[Outbound] = field(default_factory=deque)

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
        self._send(encode_message(error), Kind.RESPONSE, error.id, final=True)

    def next_event(self) -> McpEvent | None:
        return self._events.popleft() if self._events else None

    def next_outbound(self) -> Outbound | None:
        return self._outbound.popleft() if self._outbound else None

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
        if self.modern:
            # 2026-07-28: a request opts in to logs with its level (none without one).
            meta = params.get("_meta")
            level = meta.get(META_LOG_LEVEL) if isinstance(meta, dict) else None
            self.log_level = level if level in LOG_LEVELS else None
            problem = retry_problem(params)  # a multi-round retry (SEP-2322)
            if problem is not None:
                self._error(request.id, INVALID_PARAMS, problem)
                return
        if request.id in self._in_flight:
            # Not the final word on that id: the call in flight keeps its stream and answer.
            error = JsonRpcErrorResponse(
                request.id, INVALID_REQUEST, f"request id {request.id!r} is in use"
            )
            self._send(encode_message(error), Kind.RESPONSE)
            return
        if method == "ping":
            self._result(request.id, {})
        elif method == "initialize":
            self._initialize(request.id, params)
        elif method == "server/discover" and self.modern:
            self._result(request.id, self._discover())
        elif self.state is SessionState.NEW:
            self._error(request.id, INVALID_REQUEST, "the session is not initialized")
        elif method == "tools/list":
            tools = {"tools": [tool.describe() for tool in self.tools]}
            self._result(request.id, {**tools, **self._cacheable()})
        elif method == "tools/call":
            self._call_tool(request.id, params)
        elif method.startswith(("resources/", "prompts/", "completion/")):
            self._feature_request(request.id, method, params)
        elif method in TASK_METHODS and self.features.tasks and self.modern:
            self._task_request(request.id, method, params)
        elif method == "logging/setLevel":
            level = params.get("level")
            if level not in LOG_LEVELS:
                self._error(request.id, INVALID_PARAMS, f"level must be one of {LOG_LEVELS}")
            else:
                self.log_level = str(level)
                self._result(request.id, {})
        else:
            self._error(request.id, METHOD_NOT_FOUND, f"method not found: {method}")

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
        result: dict[str, Any] = {
            "protocolVersion": self.protocol_version,
            "capabilities": self._capabilities(),
            "serverInfo": {"name": self.info.name, "version": self.info.version},
        }
        if self.info.instructions is not None:
            result["instructions"] = self.info.instructions
        self._result(request_id, result)

    def _feature_request(self, request_id: RequestId, method: str, params: dict[str, Any]) -> None:
        """Resources, prompts and completion: lists and checks here, content from the app."""
        features = self.features
        token = _token(_meta_of(params).get("progressToken"))
        if method == "resources/list" and features.has_resources:
            listed = [resource.describe() for resource in features.resources]
            self._result(request_id, {"resources": listed, **self._cacheable()})
        elif method == "resources/templates/list" and features.has_resources:
            listed = [template.describe() for template in features.templates]
            self._result(request_id, {"resourceTemplates": listed, **self._cacheable()})
        elif method == "resources/read" and features.has_resources:
            uri = params.get("uri")
            if not isinstance(uri, str):
                self._error(request_id, INVALID_PARAMS, "resources/read needs a string uri")
            elif features.resource(uri) is None:
                # SEP-2164: an unknown resource is invalid params, naming the URI.
                self._error(request_id, INVALID_PARAMS, "Resource not found", {"uri": uri})
            else:
                self._in_flight[request_id] = _InFlight(method, token)
                self._events.append(ResourceRead(request_id, uri, params))
        elif method in ("resources/subscribe", "resources/unsubscribe") and (
            features.has_resources and not self.modern  # 2026-07-28: subscriptions/listen
        ):
            uri = params.get("uri")
            if not isinstance(uri, str):
                self._error(request_id, INVALID_PARAMS, f"{method} needs a string uri")
                return
            if method == "resources/subscribe":
                self.subscriptions.add(uri)
            else:
                self.subscriptions.discard(uri)
            self._result(request_id, {})
        elif method == "prompts/list" and features.prompts:
            listed = [prompt.describe() for prompt in features.prompts]
            self._result(request_id, {"prompts": listed, **self._cacheable()})
        elif method == "prompts/get" and features.prompts:
            name, arguments = params.get("name"), params.get("arguments", {})
            prompt = features.prompt(name) if isinstance(name, str) else None
            if prompt is None or not isinstance(arguments, dict):
                self._error(request_id, INVALID_PARAMS, f"unknown prompt: {name}")
            elif missing := prompt.missing(arguments):
                self._error(request_id, INVALID_PARAMS, f"missing argument(s): {missing}")
            else:
                self._in_flight[request_id] = _InFlight(method, token)
                self._events.append(PromptGet(request_id, prompt.name, arguments, params))
        elif method == "completion/complete" and features.completions:
            ref, argument = params.get("ref"), params.get("argument")
            if not isinstance(ref, dict) or not isinstance(argument, dict):
                self._error(request_id, INVALID_PARAMS, "completion needs a ref and an argument")
            else:
                self._in_flight[request_id] = _InFlight(method, token)
                self._events.append(CompletionRequest(request_id, ref, argument, params))
        else:
            self._error(request_id, METHOD_NOT_FOUND, f"method not found: {method}")

    def _task_request(self, request_id: RequestId, method: str, params: dict[str, Any]) -> None:
        if not negotiated(self.client_capabilities):
            self._missing_tasks_capability(request_id, f"{method} needs the tasks extension")
            return
        task_id = params.get("taskId")
        if not isinstance(task_id, str):
            self._error(request_id, INVALID_PARAMS, f"{method} needs a string taskId")
            return
        self._in_flight[request_id] = _InFlight(method)
        self._events.append(TaskRequest(request_id, method, task_id, params))

    def _missing_tasks_capability(self, request_id: RequestId, message: str) -> None:
        required: dict[str, Any] = {"extensions": {TASKS_EXTENSION: {}}}
        self._error(
            request_id, MISSING_CLIENT_CAPABILITY, message, {"requiredCapabilities": required}
        )

    def _call_tool(self, request_id: RequestId, params: dict[str, Any]) -> None:
        name, arguments = params.get("name"), params.get("arguments", {})
        if not isinstance(name, str) or not isinstance(arguments, dict):
            self._error(request_id, INVALID_PARAMS, "tools/call needs a name and object arguments")
            return
        tool = next((tool for tool in self.tools if tool.name == name), None)
        if tool is None:
            self._error(request_id, INVALID_PARAMS, f"unknown tool: {name}")
            return
        tasks = self.features.tasks and self.modern and negotiated(self.client_capabilities)
        if tool.task_support == "required" and not tasks:
            self._missing_tasks_capability(request_id, f"{name} runs only as a task")
            return
        meta = params.get("_meta")
        meta = meta if isinstance(meta, dict) else {}
        token = _token(meta.get("progressToken"))
        partial = _token(meta.get(PARTIAL_RESULT_TOKEN)) if self.partial_results else None
        self._in_flight[request_id] = _InFlight("tools/call", token, partial_token=partial)
        task = tasks and tool.task_support is not None
        self._events.append(ToolCall(request_id, name, arguments, token, partial, params, task))

    def _notification(self, note: JsonRpcNotification) -> None:
        params = note.params or {}
        if note.method == "notifications/initialized":
            if self.state is SessionState.INITIALIZING:
                self.state = SessionState.READY
        elif note.method == "notifications/cancelled":
            request_id = params.get("requestId")
            # Unknown or finished ids are normal (the response and the cancel crossed).
            # _token refuses a bool, which would otherwise equal (and cancel) id 1 or 0.
            if _token(request_id) is not None and request_id in self._in_flight:
                del self._in_flight[request_id]
                reason = params.get("reason")
                self._events.append(
                    CallCancelled(request_id, reason if isinstance(reason, str) else None)
                )
        # Any other notification (progress, roots changed...) needs nothing from us.

    def _reply(self, reply: JsonRpcResponse | JsonRpcErrorResponse) -> None:
        request_id = reply.id
        asked = self._asked.pop(request_id, None) if request_id is not None else None
        if asked is None or request_id is None:
            return  # not ours, or answered already: nothing waits for it
        method, related = asked
        if isinstance(reply, JsonRpcResponse):
            result = reply.result if isinstance(reply.result, dict) else {}
            self._events.append(ClientReply(request_id, method, related, result))
        else:
            self._events.append(ClientReply(request_id, method, related, None, reply))

    # --- outbound: the application's side --------------------------------------------------

    def respond(self, request_id: RequestId, result: dict[str, Any]) -> bool:
        """Answer a call; False (and nothing sent) if it was cancelled or already answered."""
        call = self._in_flight.pop(request_id, None)
        if call is None:
            return False
        if self.modern and call.method in APPLICATION_CACHEABLE:
            result = {"ttlMs": 0, "cacheScope": "private", **result}
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
        self._next_request += 1
        request_id: RequestId = self._next_request
        self._asked[request_id] = (method, related)
        request = JsonRpcRequest(request_id, method, params if params is not None else {})
        self._send(encode_message(request), Kind.CONTROL, related)
        return request_id

    def resource_updated(self, uri: str) -> bool:
        """``notifications/resources/updated`` if the client subscribed to ``uri``."""
        if uri not in self.subscriptions or self.state is SessionState.CLOSED:
            return False
        note = JsonRpcNotification("notifications/resources/updated", {"uri": uri})
        self._send(encode_message(note), Kind.CONTROL)
        return True

    def fail(self, request_id: RequestId, code: int, message: str, data: Any = None) -> bool:
        """Answer a call with a JSON-RPC error; False if it was cancelled or answered."""
        call = self._in_flight.pop(request_id, None)
        if call is None:
            return False
        self._error(request_id, code, message, data, call.progress_token)
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
        if call is None or call.progress_token is None:
            return False
        if call.last_progress is not None and progress <= call.last_progress:
            return False
        call.last_progress = progress
        params: dict[str, Any] = {"progressToken": call.progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        note = JsonRpcNotification("notifications/progress", params)
        self._send(encode_message(note), Kind.PROGRESS, request_id, call.progress_token)
        return True

    def partial_result(self, request_id: RequestId, content: list[dict[str, Any]]) -> bool:
        """Stream part of a call's output (SEP-2998) to a client that opted the call in."""
        call = self._in_flight.get(request_id)
        if call is None or call.partial_token is None:
            return False
        params: dict[str, Any] = {
            PARTIAL_RESULT_TOKEN: call.partial_token,
            "seq": call.partial_seq,
            "content": content,
        }
        call.partial_seq += 1
        note = JsonRpcNotification(PARTIAL_RESULT_METHOD, params)
        self._send(encode_message(note), Kind.PARTIAL, request_id)
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
        self._send(encode_message(note), Kind.LOG, related)
        return True

    def close(self) -> None:
        """The session ended (DELETE, expiry, the connection went away): calls are cancelled."""
        if self.state is SessionState.CLOSED:
            return
        self.state = SessionState.CLOSED
        for request_id in list(self._in_flight):
            self._events.append(CallCancelled(request_id, "the session ended"))
        self._in_flight.clear()
        self._asked.clear()
        self._outbound.clear()

    # --- helpers ---------------------------------------------------------------------------

    def _capabilities(self) -> dict[str, Any]:
        declared: dict[str, Any] = {"tools": {"listChanged": False}, "logging": {}}
        declared.update(self.features.capabilities(subscribe=not self.modern))
        if self.features.tasks and self.modern:
            declared["extensions"] = {TASKS_EXTENSION: {}}
        return declared

    def _cacheable(self) -> dict[str, Any]:
        """2026-07-28 caching directives: the tool list is fixed for the server's life and
        the same for every client."""
        return {"ttlMs": CACHE_TTL_MS, "cacheScope": "public"} if self.modern else {}

    def _discover(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "supportedVersions": list(MODERN_VERSIONS),
            "capabilities": self._capabilities(),
            **self._cacheable(),
        }
        if self.info.instructions is not None:
            result["instructions"] = self.info.instructions
        return result

    def _result(
        self, request_id: RequestId, result: dict[str, Any], token: str | int | None = None
    ) -> None:
        if self.modern:
            # 2026-07-28: every result says it is complete and who answered.
            identity = {"name": self.info.name, "version": self.info.version}
            meta = {**result.get("_meta", {}), META_SERVER_INFO: identity}
            result = {"resultType": "complete", **result, "_meta": meta}
        text = encode_message(JsonRpcResponse(request_id, result))
        self._send(text, Kind.RESPONSE, request_id, token, final=True)

    def _error(
        self,
        request_id: RequestId,
        code: int,
        message: str,
        data: Any = None,
        token: str | int | None = None,
    ) -> None:
        text = encode_message(JsonRpcErrorResponse(request_id, code, message, data))
        self._send(text, Kind.RESPONSE, request_id, token, final=True, error_code=code)

    def _send(
        self,
        text: str,
        kind: Kind,
        related: RequestId | None = None,
        token: str | int | None = None,
        *,
        final: bool = False,
        error_code: int | None = None,
    ) -> None:
        self._outbound.append(Outbound(text, kind, related, token, final, error_code))


def _meta_of(params: dict[str, Any]) -> dict[str, Any]:
    meta = params.get("_meta")
    return meta if isinstance(meta, dict) else {}


def _token(value: object) -> str | int | None:
    """A progress or partial-result token: a string or an integer (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return value
