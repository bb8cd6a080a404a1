"""Where a client's request for what the server offers goes: answered, refused, or handed on.

Tool calls, tasks, resources, prompts and completion. Each function checks the request
against what is offered and returns a :data:`Decision`; it changes nothing, so the session
applies every decision in one place. The protocol answers the lists itself; the
application answers the rest (the :class:`HandOff` event), once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from diaproto.mcp.calls import Call, as_token, meta_of
from diaproto.mcp.events import (
    CompletionRequest,
    McpEvent,
    PromptGet,
    ResourceRead,
    TaskRequest,
    ToolCall,
)
from diaproto.mcp.features import Features, Tool
from diaproto.mcp.jsonrpc import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    MISSING_CLIENT_CAPABILITY,
    RequestId,
)
from diaproto.mcp.protocol import PARTIAL_RESULT_TOKEN
from diaproto.mcp.tasks import TASK_METHODS, TASKS_EXTENSION, negotiated


@dataclass(frozen=True, slots=True)
class Answer:
    """The protocol answers now."""

    result: dict[str, Any]
    cacheable: bool = False  # a list, fixed for the server's life (2026-07-28 caching hints)


@dataclass(frozen=True, slots=True)
class Refusal:
    """An error response."""

    code: int
    message: str
    data: Any = None


@dataclass(frozen=True, slots=True)
class HandOff:
    """The application answers: ``event`` goes to it, ``call`` is in flight until then."""

    event: McpEvent
    call: Call


@dataclass(frozen=True, slots=True)
class Subscription:
    """``resources/subscribe`` (``subscribe``) or ``resources/unsubscribe`` of ``uri``."""

    uri: str
    subscribe: bool


Decision = Answer | Refusal | HandOff | Subscription


class Offering(Protocol):
    """What routing reads of a session (:class:`~diaproto.mcp.session.McpSession`)."""

    @property
    def tools(self) -> tuple[Tool, ...]: ...
    @property
    def features(self) -> Features: ...
    @property
    def modern(self) -> bool: ...
    @property
    def client_capabilities(self) -> dict[str, Any]: ...
    @property
    def partial_results(self) -> bool: ...


def route(
    request_id: RequestId, method: str, params: dict[str, Any], session: Offering
) -> Decision:
    """A request of an initialized session that is not about the session itself."""
    features, modern = session.features, session.modern
    if method == "tools/list":
        return Answer({"tools": [tool.describe() for tool in session.tools]}, cacheable=True)
    if method == "tools/call":
        tasks = features.tasks and modern and negotiated(session.client_capabilities)
        partial = session.partial_results
        return call_tool(request_id, params, session.tools, tasks=tasks, partial_results=partial)
    if method.startswith(("resources/", "prompts/", "completion/")):
        return feature_request(request_id, method, params, features, modern=modern)
    if method in TASK_METHODS and features.tasks and modern:
        tasks_negotiated = negotiated(session.client_capabilities)
        return task_request(request_id, method, params, negotiated=tasks_negotiated)
    return not_found(method)


def not_found(method: str) -> Refusal:
    return Refusal(METHOD_NOT_FOUND, f"method not found: {method}")


def missing_tasks_capability(message: str) -> Refusal:
    required: dict[str, Any] = {"extensions": {TASKS_EXTENSION: {}}}
    return Refusal(MISSING_CLIENT_CAPABILITY, message, {"requiredCapabilities": required})


# --- tools and tasks -----------------------------------------------------------------------


def call_tool(
    request_id: RequestId,
    params: dict[str, Any],
    tools: tuple[Tool, ...],
    *,
    tasks: bool,
    partial_results: bool,
) -> Decision:
    """``tasks``: the client may run calls as tasks; ``partial_results``: it takes them."""
    name, arguments = params.get("name"), params.get("arguments", {})
    if not isinstance(name, str) or not isinstance(arguments, dict):
        return Refusal(INVALID_PARAMS, "tools/call needs a name and object arguments")
    tool = next((tool for tool in tools if tool.name == name), None)
    if tool is None:
        return Refusal(INVALID_PARAMS, f"unknown tool: {name}")
    if tool.task_support == "required" and not tasks:
        return missing_tasks_capability(f"{name} runs only as a task")
    meta = meta_of(params)
    token = as_token(meta.get("progressToken"))
    partial = as_token(meta.get(PARTIAL_RESULT_TOKEN)) if partial_results else None
    task = tasks and tool.task_support is not None
    event = ToolCall(request_id, name, arguments, token, partial, params, task)
    return HandOff(event, Call("tools/call", token, partial_token=partial))


def task_request(
    request_id: RequestId, method: str, params: dict[str, Any], *, negotiated: bool
) -> Decision:
    """``tasks/*``; ``negotiated``: the client declared the tasks extension."""
    if not negotiated:
        return missing_tasks_capability(f"{method} needs the tasks extension")
    task_id = params.get("taskId")
    if not isinstance(task_id, str):
        return Refusal(INVALID_PARAMS, f"{method} needs a string taskId")
    return HandOff(TaskRequest(request_id, method, task_id, params), Call(method))


# --- resources, prompts, completion --------------------------------------------------------


def feature_request(
    request_id: RequestId,
    method: str,
    params: dict[str, Any],
    features: Features,
    *,
    modern: bool,
) -> Decision:
    """``resources/*``, ``prompts/*``, ``completion/*``; refused when not offered."""
    handler = _FEATURE_METHODS.get(method)
    if handler is None or not _offered(method, features, modern=modern):
        return not_found(method)
    return handler(request_id, method, params, features)


def _offered(method: str, features: Features, *, modern: bool) -> bool:
    if method.startswith("resources/"):
        # 2026-07-28 has no subscriptions here (it has subscriptions/listen).
        return features.has_resources and not (modern and method in _SUBSCRIPTION_METHODS)
    if method.startswith("prompts/"):
        return bool(features.prompts)
    return features.completions


def _progress_token(params: dict[str, Any]) -> str | int | None:
    return as_token(meta_of(params).get("progressToken"))


def _list_resources(
    request_id: RequestId, method: str, params: dict[str, Any], features: Features
) -> Decision:
    listed = [resource.describe() for resource in features.resources]
    return Answer({"resources": listed}, cacheable=True)


def _list_templates(
    request_id: RequestId, method: str, params: dict[str, Any], features: Features
) -> Decision:
    listed = [template.describe() for template in features.templates]
    return Answer({"resourceTemplates": listed}, cacheable=True)


def _read_resource(
    request_id: RequestId, method: str, params: dict[str, Any], features: Features
) -> Decision:
    uri = params.get("uri")
    if not isinstance(uri, str):
        return Refusal(INVALID_PARAMS, "resources/read needs a string uri")
    if features.resource(uri) is None:
        # SEP-2164: an unknown resource is invalid params, naming the URI.
        return Refusal(INVALID_PARAMS, "Resource not found", {"uri": uri})
    event = ResourceRead(request_id, uri, params)
    return HandOff(event, Call(method, _progress_token(params)))


def _subscription(
    request_id: RequestId, method: str, params: dict[str, Any], features: Features
) -> Decision:
    uri = params.get("uri")
    if not isinstance(uri, str):
        return Refusal(INVALID_PARAMS, f"{method} needs a string uri")
    return Subscription(uri, subscribe=method == "resources/subscribe")


def _list_prompts(
    request_id: RequestId, method: str, params: dict[str, Any], features: Features
) -> Decision:
    listed = [prompt.describe() for prompt in features.prompts]
    return Answer({"prompts": listed}, cacheable=True)


def _get_prompt(
    request_id: RequestId, method: str, params: dict[str, Any], features: Features
) -> Decision:
    name, arguments = params.get("name"), params.get("arguments", {})
    prompt = features.prompt(name) if isinstance(name, str) else None
    if prompt is None or not isinstance(arguments, dict):
        return Refusal(INVALID_PARAMS, f"unknown prompt: {name}")
    if missing := prompt.missing(arguments):
        return Refusal(INVALID_PARAMS, f"missing argument(s): {missing}")
    event = PromptGet(request_id, prompt.name, arguments, params)
    return HandOff(event, Call(method, _progress_token(params)))


def _complete(
    request_id: RequestId, method: str, params: dict[str, Any], features: Features
) -> Decision:
    ref, argument = params.get("ref"), params.get("argument")
    if not isinstance(ref, dict) or not isinstance(argument, dict):
        return Refusal(INVALID_PARAMS, "completion needs a ref and an argument")
    event = CompletionRequest(request_id, ref, argument, params)
    return HandOff(event, Call(method, _progress_token(params)))


_SUBSCRIPTION_METHODS = ("resources/subscribe", "resources/unsubscribe")
_FEATURE_METHODS: dict[str, Callable[[RequestId, str, dict[str, Any], Features], Decision]] = {
    "resources/list": _list_resources,
    "resources/templates/list": _list_templates,
    "resources/read": _read_resource,
    "resources/subscribe": _subscription,
    "resources/unsubscribe": _subscription,
    "prompts/list": _list_prompts,
    "prompts/get": _get_prompt,
    "completion/complete": _complete,
}
