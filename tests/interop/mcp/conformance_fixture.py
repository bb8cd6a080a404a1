"""The reference fixtures the official MCP conformance suite expects, on diaproto's real server.

``@modelcontextprotocol/conformance`` tests a server by calling tools, reading resources and
getting prompts with fixed names (its "everything server": ``test_simple_text``,
``test://static-text``, ``test_simple_prompt``...). :func:`conformance_service` is
``diaproto serve``'s own service (the synthetic voice, every MCP transport, ``speak`` and
``list_voices``) with those fixtures added through the public extension points:
``McpService.add_tool`` and ``McpService.catalog``. Nothing here decides a protocol
question; the fixtures only produce the content the suite checks for.

Run it by hand: ``python tests/interop/mcp/conformance_fixture.py [PORT]``, then
``npx @modelcontextprotocol/conformance server --url http://127.0.0.1:PORT/mcp``.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable
from typing import Any

from diaproto.apps.mcp.catalog import TaskWork
from diaproto.apps.mcp.peer import McpPeer
from diaproto.apps.serve.app import DiaService
from diaproto.apps.serve.sources import SyntheticSource
from diaproto.mcp import JsonRpcError, Tool, ToolCall
from diaproto.mcp.events import ClientReply, CompletionRequest, PromptGet, ResourceRead
from diaproto.mcp.jsonrpc import MISSING_CLIENT_CAPABILITY
from diaproto.mcp.mrtr import StateSigner, client_can, input_request, input_required
from diaproto.mcp.prompts import Prompt, PromptArgument
from diaproto.mcp.resources import Resource, ResourceTemplate
from diaproto.runtime import Cancellable

#: A 1x1 red PNG and a minimal WAV: the suite's own test data.
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5E"
    "rkJggg=="
)
WAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="
RECONNECT_DELAY = 0.1  # seconds test_reconnection waits after closing its stream
STEP_DELAY = 0.05  # seconds between test_tool_with_progress's reports

NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}}

#: SEP-1613 / SEP-2106: a JSON Schema 2020-12 input schema that must reach the client as is.
JSON_SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

ToolHandler = Callable[[McpPeer, ToolCall, float], None]


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def result(*content: dict[str, Any], is_error: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"content": list(content)}
    if is_error:
        body["isError"] = True
    return body


def answer(peer: McpPeer, call: ToolCall, body: dict[str, Any], now: float) -> None:
    peer.session.respond(call.request_id, body)
    peer.pump(now)


def fixed(body: dict[str, Any]) -> ToolHandler:
    """A tool that always answers ``body``."""
    return lambda peer, call, now: answer(peer, call, body, now)


# --- tools that stream or ask the client (2025-11-25) ------------------------------------


def with_logging(peer: McpPeer, call: ToolCall, now: float) -> None:
    for line in ("Tool execution started", "Tool processing data", "Tool execution completed"):
        peer.session.log("info", line, related=call.request_id)
    answer(peer, call, result(text("Tool with logging executed successfully")), now)


def with_progress(peer: McpPeer, call: ToolCall, now: float) -> None:
    """Three reports a step apart, then the result (as the suite's reference tool does: a
    report still queued when its call is answered is withdrawn, by design)."""
    steps = [0, 50, 100]

    def step() -> None:
        now = peer.runtime.now()
        if steps:
            done = steps.pop(0)
            peer.session.progress(call.request_id, done, 100, f"Completed step {done} of 100")
            peer.pump(now)
            peer.runtime.call_later(STEP_DELAY, step)
        else:
            answer(peer, call, result(text(str(call.progress_token))), now)

    step()


def reconnection(peer: McpPeer, call: ToolCall, now: float) -> None:
    """SEP-1699: close the call's stream mid-call; the result follows the client's resume."""
    peer.close_stream(call.request_id, now)

    def finish() -> None:
        done = result(text("Reconnection test completed successfully."))
        answer(peer, call, done, peer.runtime.now())

    peer.runtime.call_later(RECONNECT_DELAY, finish)


def asking(method: str, params: Callable[[ToolCall], dict[str, Any]], label: str) -> ToolHandler:
    """A tool that asks the client (sampling, elicitation) and reports what it answered."""

    def handler(peer: McpPeer, call: ToolCall, now: float) -> None:
        def replied(reply: ClientReply, now: float) -> None:
            if reply.result is None:
                error = reply.error.message if reply.error is not None else "no answer"
                answer(peer, call, result(text(f"{label} failed: {error}"), is_error=True), now)
            elif method == "sampling/createMessage":
                content = reply.result.get("content")
                said = content.get("text") if isinstance(content, dict) else None
                answer(peer, call, result(text(f"LLM response: {said}")), now)
            else:
                action, given = reply.result.get("action"), reply.result.get("content", {})
                summary = f"{label}: action={action}, content={json.dumps(given)}"
                answer(peer, call, result(text(summary)), now)

        if not peer.ask(method, params(call), call.request_id, replied, now):
            refusal = f"the client does not support {method}"
            answer(peer, call, result(text(refusal), is_error=True), now)

    return handler


def sampling_params(call: ToolCall) -> dict[str, Any]:
    prompt = str(call.arguments.get("prompt", ""))
    return {"messages": [{"role": "user", "content": text(prompt)}], "maxTokens": 100}


def elicitation_params(call: ToolCall) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {"response": {"type": "string", "description": "User's response"}},
        "required": ["response"],
    }
    return {"message": str(call.arguments.get("message", "")), "requestedSchema": schema}


def defaults_params(call: ToolCall) -> dict[str, Any]:
    """SEP-1034: a default for every primitive type."""
    properties = {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    }
    return {
        "message": "Please review and update the form fields with defaults",
        "requestedSchema": {"type": "object", "properties": properties, "required": []},
    }


def enums_params(call: ToolCall) -> dict[str, Any]:
    """SEP-1330: the five enum shapes."""
    titled = [
        {"const": f"value{n}", "title": f"{title} Option"}
        for n, title in enumerate(("First", "Second", "Third"), 1)
    ]
    choices = [
        {"const": f"value{n}", "title": f"{title} Choice"}
        for n, title in enumerate(("First", "Second", "Third"), 1)
    ]
    options = ["option1", "option2", "option3"]
    properties = {
        "untitledSingle": {"type": "string", "description": "Select one option", "enum": options},
        "titledSingle": {
            "type": "string",
            "description": "Select one option with titles",
            "oneOf": titled,
        },
        "legacyEnum": {
            "type": "string",
            "description": "Select one option (legacy)",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {
            "type": "array",
            "description": "Select multiple options",
            "minItems": 1,
            "maxItems": 3,
            "items": {"type": "string", "enum": options},
        },
        "titledMulti": {
            "type": "array",
            "description": "Select multiple options with titles",
            "minItems": 1,
            "maxItems": 3,
            "items": {"anyOf": choices},
        },
    }
    return {
        "message": "Please select options from the enum fields",
        "requestedSchema": {"type": "object", "properties": properties, "required": []},
    }


# --- 2026-07-28: multi-round-trip requests (SEP-2322) and per-request capabilities -------


def ask_text(field: str) -> dict[str, Any]:
    return {"type": "object", "properties": {field: {"type": "string"}}, "required": [field]}


def elicit(message: str, field: str) -> dict[str, Any]:
    return input_request(
        "elicitation/create", {"message": message, "requestedSchema": ask_text(field)}
    )


def sample(prompt: str, max_tokens: int = 100) -> dict[str, Any]:
    messages = [{"role": "user", "content": text(prompt)}]
    return input_request("sampling/createMessage", {"messages": messages, "maxTokens": max_tokens})


CONFIRM = input_request(
    "elicitation/create",
    {
        "message": "Please confirm",
        "requestedSchema": {
            "type": "object",
            "properties": {"ok": {"type": "boolean"}},
            "required": ["ok"],
        },
    },
)


def responses(params: dict[str, Any]) -> dict[str, Any]:
    given = params.get("inputResponses")
    return given if isinstance(given, dict) else {}


def content_field(response: object, field: str) -> object:
    content = response.get("content") if isinstance(response, dict) else None
    return content.get(field) if isinstance(content, dict) else None


def client_capabilities(peer: McpPeer) -> dict[str, Any]:
    return peer.session.client_capabilities


class Mrtr:
    """The SEP-2322 tools: each answers input-required until the client's retry carries
    what it asked for. Their state travels through the client, sealed by one signer."""

    def __init__(self) -> None:
        self.signer = StateSigner()

    def tools(self) -> dict[str, ToolHandler]:
        return {
            "test_input_required_result_elicitation": self.elicitation,
            "test_input_required_result_sampling": self.sampling,
            "test_input_required_result_list_roots": self.list_roots,
            "test_input_required_result_request_state": self.request_state,
            "test_input_required_result_multiple_inputs": self.multiple_inputs,
            "test_input_required_result_multi_round": self.multi_round,
            "test_input_required_result_tampered_state": self.tampered_state,
            "test_input_required_result_capabilities": self.capabilities,
        }

    def verified(self, call: ToolCall, kind: str) -> dict[str, Any] | None:
        payload = self.signer.verify(call.params.get("requestState"))
        return payload if payload is not None and payload.get("kind") == kind else None

    def elicitation(self, peer: McpPeer, call: ToolCall, now: float) -> None:
        given = responses(call.params).get("user_name")
        if given is not None:
            answer(peer, call, result(text(f"Hello, {content_field(given, 'name')}!")), now)
        else:
            ask = {"user_name": elicit("What is your name?", "name")}
            answer(peer, call, input_required(ask), now)

    def sampling(self, peer: McpPeer, call: ToolCall, now: float) -> None:
        given = responses(call.params).get("sample_request")
        if given is not None:
            said = content_field(given, "text")
            answer(peer, call, result(text(f"Sampling result: {said}")), now)
        else:
            ask = {"sample_request": sample("What is the capital of France?")}
            answer(peer, call, input_required(ask), now)

    def list_roots(self, peer: McpPeer, call: ToolCall, now: float) -> None:
        given = responses(call.params).get("roots_request")
        if isinstance(given, dict):
            roots = given.get("roots")
            count = len(roots) if isinstance(roots, list) else 0
            answer(peer, call, result(text(f"Found {count} root(s)")), now)
        else:
            ask = {"roots_request": input_request("roots/list")}
            answer(peer, call, input_required(ask), now)

    def request_state(self, peer: McpPeer, call: ToolCall, now: float) -> None:
        confirmed = content_field(responses(call.params).get("confirm"), "ok")
        if self.verified(call, "request-state") is not None and confirmed is True:
            answer(peer, call, result(text("state-ok: requestState validated")), now)
        else:
            state = self.signer.sign({"kind": "request-state"})
            answer(peer, call, input_required({"confirm": CONFIRM}, state), now)

    def multiple_inputs(self, peer: McpPeer, call: ToolCall, now: float) -> None:
        given = responses(call.params)
        names = ("user_name", "greeting", "client_roots")
        if self.verified(call, "multiple-inputs") is not None and all(n in given for n in names):
            roots = (
                given["client_roots"].get("roots")
                if isinstance(given["client_roots"], dict)
                else None
            )
            summary = (
                f"Name: {content_field(given['user_name'], 'name')}; "
                f"Greeting: {content_field(given['greeting'], 'text')}; "
                f"Roots: {len(roots) if isinstance(roots, list) else 0}"
            )
            answer(peer, call, result(text(summary)), now)
            return
        ask = {
            "user_name": elicit("What is your name?", "name"),
            "greeting": sample("Generate a greeting", 50),
            "client_roots": input_request("roots/list"),
        }
        answer(peer, call, input_required(ask, self.signer.sign({"kind": "multiple-inputs"})), now)

    def multi_round(self, peer: McpPeer, call: ToolCall, now: float) -> None:
        state = self.verified(call, "multi-round") or {}
        given = responses(call.params)
        if state.get("round") == 1 and "step1" in given:
            name = content_field(given["step1"], "name")
            ask = {"step2": elicit("Step 2: What is your favorite color?", "color")}
            sealed = self.signer.sign({"kind": "multi-round", "round": 2, "name": name})
            answer(peer, call, input_required(ask, sealed), now)
        elif state.get("round") == 2 and "step2" in given:
            color = content_field(given["step2"], "color")
            summary = f"Multi-round complete for {state.get('name')} who likes {color}"
            answer(peer, call, result(text(summary)), now)
        else:
            ask = {"step1": elicit("Step 1: What is your name?", "name")}
            sealed = self.signer.sign({"kind": "multi-round", "round": 1})
            answer(peer, call, input_required(ask, sealed), now)

    def tampered_state(self, peer: McpPeer, call: ToolCall, now: float) -> None:
        state = call.params.get("requestState")
        if state is not None:
            payload = self.signer.verify(state)
            if payload is None:
                error = JsonRpcError(-32602, "requestState integrity check failed")
                peer.session.fail(call.request_id, error.code, error.message)
                peer.pump(now)
                return
            if payload.get("kind") == "tamper-test" and "confirm" in responses(call.params):
                answer(peer, call, result(text("integrity-ok: state verified")), now)
                return
        sealed = self.signer.sign({"kind": "tamper-test"})
        answer(peer, call, input_required({"confirm": CONFIRM}, sealed), now)

    def capabilities(self, peer: McpPeer, call: ToolCall, now: float) -> None:
        given = responses(call.params)
        if given:
            answer(peer, call, result(text(f"capabilities-ok: received {','.join(given)}")), now)
            return
        wanted = {
            "elicit_input": elicit("Elicitation input", "value"),
            "sample_input": sample("Sample request", 50),
        }
        ask = {
            key: request
            for key, request in wanted.items()
            if client_can(request["method"], client_capabilities(peer))
        }
        if not ask:
            answer(peer, call, result(text("No supported capabilities declared")), now)
        else:
            sealed = self.signer.sign({"kind": "capabilities-test"})
            answer(peer, call, input_required(ask, sealed), now)


def modern_only(handler: ToolHandler) -> ToolHandler:
    """Input-required results exist at 2026-07-28 only; earlier a tool asks the client."""

    def guarded(peer: McpPeer, call: ToolCall, now: float) -> None:
        if peer.session.modern:
            handler(peer, call, now)
        else:
            refusal = result(text("this tool needs MCP 2026-07-28"), is_error=True)
            answer(peer, call, refusal, now)

    return guarded


def missing_capability(peer: McpPeer, call: ToolCall, now: float) -> None:
    """Needs sampling: a client that did not declare it gets -32021 naming it."""
    if "sampling" not in client_capabilities(peer):
        data: dict[str, Any] = {"requiredCapabilities": {"sampling": {}}}
        peer.session.fail(call.request_id, MISSING_CLIENT_CAPABILITY, "sampling is required", data)
        peer.pump(now)
    else:
        answer(peer, call, result(text("Success")), now)


def logging_tool(peer: McpPeer, call: ToolCall, now: float) -> None:
    """Logs once: only a request that opted in with a log level may get it."""
    peer.session.log("info", "Diagnostic trace logging activated", related=call.request_id)
    answer(peer, call, result(text("Logging evaluated")), now)


# --- 2026-07-28: tasks (SEP-2663) ------------------------------------------------------------

FAILING_JOB_DELAY = 0.5  # seconds before failing_job reports its tool error


class Tasks:
    """The tasks extension's fixtures: ``greet`` (never a task), ``slow_compute``,
    ``failing_job``, ``protocol_error_job``, ``confirm_delete``, ``multi_input`` and
    ``test_tool_with_task`` (input-required first, then a task)."""

    def tools(self) -> list[tuple[Tool, ToolHandler]]:
        def tasked(name: str, description: str, support: str, schema: dict[str, Any]) -> Tool:
            return Tool(name, description, schema, task_support=support)

        seconds = {
            "type": "object",
            "properties": {"seconds": {"type": "number"}, "label": {"type": "string"}},
        }
        filename = {"type": "object", "properties": {"filename": {"type": "string"}}}
        return [
            (tool("greet", "Says hello", string_argument("name", "Who")), self.greet),
            (tasked("slow_compute", "Sleeps, then answers", "optional", seconds), self.slow),
            (tasked("failing_job", "A tool error", "required", NO_ARGUMENTS), self.failing),
            (
                tasked("protocol_error_job", "A protocol error", "optional", NO_ARGUMENTS),
                self.protocol_error,
            ),
            (tasked("confirm_delete", "Asks first", "optional", filename), self.confirm),
            (tasked("multi_input", "Asks twice", "optional", NO_ARGUMENTS), self.multi_input),
            (
                tasked("test_tool_with_task", "Input, then a task", "required", NO_ARGUMENTS),
                self.input_then_task,
            ),
        ]

    def greet(self, peer: McpPeer, call: ToolCall, now: float) -> None:
        answer(peer, call, result(text(f"Hello, {call.arguments.get('name')}!")), now)

    def slow(self, peer: McpPeer, call: ToolCall, now: float) -> None:
        delay = call.arguments.get("seconds", 0)
        delay = float(delay) if isinstance(delay, int | float) else 0.0
        done = result(text(f"computed {call.arguments.get('label')} in {delay} s"))
        catalog = peer.service.catalog
        if not call.task:
            peer.runtime.call_later(delay, lambda: answer(peer, call, done, peer.runtime.now()))
            return
        timers: list[Cancellable] = []

        def cancelled() -> None:
            timers[0].cancel()

        def finish() -> None:
            catalog.finish_task(task.task_id, done)

        task = catalog.start_task(peer, call, now, TaskWork(on_cancel=cancelled))
        timers.append(peer.runtime.call_later(delay, finish))

    def failing(self, peer: McpPeer, call: ToolCall, now: float) -> None:
        catalog = peer.service.catalog
        task = catalog.start_task(peer, call, now)
        failed = result(text("failing_job failed, as it always does"), is_error=True)

        def finish() -> None:
            catalog.finish_task(task.task_id, failed)

        peer.runtime.call_later(FAILING_JOB_DELAY, finish)

    def protocol_error(self, peer: McpPeer, call: ToolCall, now: float) -> None:
        if not call.task:
            peer.session.fail(call.request_id, -32603, "protocol_error_job broke")
            peer.pump(now)
            return
        catalog = peer.service.catalog
        task = catalog.start_task(peer, call, now)
        catalog.fail_task(task.task_id, -32603, "protocol_error_job broke")

    def asks(
        self, peer: McpPeer, call: ToolCall, now: float, requests: dict[str, dict[str, Any]]
    ) -> None:
        """A task that waits for ``requests``, then completes with what it was told."""
        if not call.task:
            answer(peer, call, result(text("this tool runs as a task"), is_error=True), now)
            return
        catalog = peer.service.catalog
        answers: dict[str, Any] = {}

        def answered(taken: dict[str, dict[str, Any]], now: float) -> None:
            answers.update(taken)
            if set(answers) == set(requests):
                summary = ", ".join(f"{k}={content_field(v, 'value')}" for k, v in answers.items())
                catalog.finish_task(task.task_id, result(text(f"answered: {summary}")))

        task = catalog.start_task(peer, call, now, TaskWork(on_input=answered))
        catalog.task_needs_input(task.task_id, requests)

    def confirm(self, peer: McpPeer, call: ToolCall, now: float) -> None:
        message = f"Delete {call.arguments.get('filename')}?"
        self.asks(peer, call, now, {"confirm": elicit(message, "value")})

    def multi_input(self, peer: McpPeer, call: ToolCall, now: float) -> None:
        ask = {"first": elicit("First value?", "value"), "second": elicit("Second?", "value")}
        self.asks(peer, call, now, ask)

    def input_then_task(self, peer: McpPeer, call: ToolCall, now: float) -> None:
        given = responses(call.params).get("user_name")
        if given is None:
            ask = {"user_name": elicit("What is your name?", "name")}
            answer(peer, call, input_required(ask), now)
            return
        catalog = peer.service.catalog
        task = catalog.start_task(peer, call, now)
        catalog.finish_task(task.task_id, result(text(f"Hello, {content_field(given, 'name')}!")))


# --- the whole fixture -------------------------------------------------------------------


def tool(name: str, description: str, schema: dict[str, Any] | None = None) -> Tool:
    return Tool(name, description, schema if schema is not None else NO_ARGUMENTS)


def string_argument(name: str, description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": "string", "description": description}},
        "required": [name],
    }


def tools() -> list[tuple[Tool, ToolHandler]]:
    mixed_resource = {
        "uri": "test://mixed-content-resource",
        "mimeType": "application/json",
        "text": json.dumps({"test": "data", "value": 123}),
    }
    embedded = {
        "uri": "test://embedded-resource",
        "mimeType": "text/plain",
        "text": "This is an embedded resource content.",
    }
    image = {"type": "image", "data": PNG, "mimeType": "image/png"}
    fixed_tools: list[tuple[Tool, ToolHandler]] = [
        (
            tool("test_simple_text", "Tests simple text content response"),
            fixed(result(text("This is a simple text response for testing."))),
        ),
        (tool("test_image_content", "Tests image content response"), fixed(result(image))),
        (
            tool("test_audio_content", "Tests audio content response"),
            fixed(result({"type": "audio", "data": WAV, "mimeType": "audio/wav"})),
        ),
        (
            tool("test_embedded_resource", "Tests embedded resource content response"),
            fixed(result({"type": "resource", "resource": embedded})),
        ),
        (
            tool("test_multiple_content_types", "Tests text, image and resource content"),
            fixed(
                result(
                    text("Multiple content types test:"),
                    image,
                    {"type": "resource", "resource": mixed_resource},
                )
            ),
        ),
        (tool("test_tool_with_logging", "Emits log messages while it runs"), with_logging),
        (tool("test_tool_with_progress", "Reports progress notifications"), with_progress),
        (
            tool("test_error_handling", "Tests error response handling"),
            fixed(
                result(text("This tool intentionally returns an error for testing"), is_error=True)
            ),
        ),
        (tool("test_reconnection", "Closes its SSE stream mid-call (SEP-1699)"), reconnection),
        (
            tool(
                "test_sampling",
                "Asks the client for an LLM completion",
                string_argument("prompt", "The prompt to send to the LLM"),
            ),
            asking("sampling/createMessage", sampling_params, "Sampling"),
        ),
        (
            tool(
                "test_elicitation",
                "Asks the user for input",
                string_argument("message", "The message to show the user"),
            ),
            asking("elicitation/create", elicitation_params, "User response"),
        ),
        (
            tool("test_elicitation_sep1034_defaults", "Elicitation with defaults (SEP-1034)"),
            asking("elicitation/create", defaults_params, "Elicitation completed"),
        ),
        (
            tool("test_elicitation_sep1330_enums", "Elicitation with enum schemas (SEP-1330)"),
            asking("elicitation/create", enums_params, "Elicitation completed"),
        ),
        (
            tool(
                "json_schema_2020_12_tool",
                "Tool with JSON Schema 2020-12 features (SEP-1613)",
                JSON_SCHEMA_2020_12,
            ),
            lambda peer, call, now: answer(
                peer, call, result(text(f"called with: {json.dumps(call.arguments)}")), now
            ),
        ),
        (
            tool(
                "test_custom_header",
                "SEP-2243: its region argument is mirrored in the Mcp-Param-Region header",
                {
                    "type": "object",
                    "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
                    "required": ["region"],
                },
            ),
            lambda peer, call, now: answer(
                peer, call, result(text(f"region {call.arguments.get('region')}")), now
            ),
        ),
        (tool("test_missing_capability", "Needs the sampling capability"), missing_capability),
        (tool("test_logging_tool", "Logs when the request asks for logs"), logging_tool),
        (
            tool("test_streaming_elicitation", "Answers on its response stream only"),
            fixed(result(text("Streaming complete"))),
        ),
    ]
    mrtr = Mrtr()
    for name, handler in mrtr.tools().items():
        fixed_tools.append(
            (tool(name, f"SEP-2322: {name.removeprefix('test_')}"), modern_only(handler))
        )
    return [*fixed_tools, *Tasks().tools()]


def contents(uri: str, mime_type: str, **body: str) -> dict[str, Any]:
    return {"contents": [{"uri": uri, "mimeType": mime_type, **body}]}


def template_data(read: ResourceRead) -> dict[str, Any]:
    variables = TEMPLATE.match(read.uri) or {}
    data = {
        "id": variables.get("id"),
        "templateTest": True,
        "data": f"Data for ID: {variables.get('id')}",
    }
    return contents(read.uri, "application/json", text=json.dumps(data))


TEMPLATE = ResourceTemplate(
    "test://template/{id}/data",
    "template",
    title="Resource Template",
    description="A resource template with parameter substitution",
    mime_type="application/json",
)

RESOURCES: list[tuple[Resource, str, dict[str, str]]] = [
    (
        Resource(
            "test://static-text",
            "static-text",
            "Static Text Resource",
            "A static text resource",
            "text/plain",
        ),
        "text/plain",
        {"text": "This is the content of the static text resource."},
    ),
    (
        Resource(
            "test://static-binary",
            "static-binary",
            "Static Binary Resource",
            "A PNG image",
            "image/png",
        ),
        "image/png",
        {"blob": PNG},
    ),
    (
        Resource(
            "test://watched-resource",
            "watched-resource",
            "Watched Resource",
            "Subscribe to it",
            "text/plain",
        ),
        "text/plain",
        {"text": "Watched resource content"},
    ),
    (
        Resource(
            "test://stateless-static-text",
            "Stateless Static Text",
            None,
            "Served at 2026-07-28 too",
            "text/plain",
        ),
        "text/plain",
        {"text": "Static text content from the stateless draft path."},
    ),
]


def message(content: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": content}


def prompt_with_arguments(get: PromptGet) -> dict[str, Any]:
    arg1, arg2 = get.arguments.get("arg1"), get.arguments.get("arg2")
    return {"messages": [message(text(f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"))]}


def prompt_with_resource(get: PromptGet) -> dict[str, Any]:
    resource = {
        "uri": str(get.arguments.get("resourceUri")),
        "mimeType": "text/plain",
        "text": "Embedded resource content for testing.",
    }
    return {
        "messages": [
            message({"type": "resource", "resource": resource}),
            message(text("Please process the embedded resource above.")),
        ]
    }


def prompt_needing_input(get: PromptGet) -> dict[str, Any]:
    """SEP-2322 outside tools: the prompt asks the client for context first."""
    given = responses(get.params).get("user_context")
    if given is not None:
        return {
            "messages": [message(text(f"Prompt with context: {content_field(given, 'context')}"))]
        }
    return input_required(
        {"user_context": elicit("What context should the prompt use?", "context")}
    )


PROMPTS: list[tuple[Prompt, Callable[[PromptGet], dict[str, Any]]]] = [
    (
        Prompt("test_simple_prompt", "Simple Test Prompt", "A simple prompt without arguments"),
        lambda get: {"messages": [message(text("This is a simple prompt for testing."))]},
    ),
    (
        Prompt(
            "test_prompt_with_arguments",
            "Prompt With Arguments",
            "A prompt with required arguments",
            (
                PromptArgument("arg1", "First test argument", required=True),
                PromptArgument("arg2", "Second test argument", required=True),
            ),
        ),
        prompt_with_arguments,
    ),
    (
        Prompt(
            "test_prompt_with_embedded_resource",
            "Prompt With Embedded Resource",
            "A prompt that includes an embedded resource",
            (PromptArgument("resourceUri", "URI of the resource to embed", required=True),),
        ),
        prompt_with_resource,
    ),
    (
        Prompt("test_prompt_with_image", "Prompt With Image", "A prompt that includes an image"),
        lambda get: {
            "messages": [
                message({"type": "image", "data": PNG, "mimeType": "image/png"}),
                message(text("Please analyze the image above.")),
            ]
        },
    ),
    (
        Prompt("test_input_required_result_prompt", None, "SEP-2322: a prompt that needs input"),
        prompt_needing_input,
    ),
]

#: Completion candidates per argument name (any prompt or template).
CANDIDATES = {"arg1": ["test", "testing", "tested", "paris"], "id": ["123", "456"]}


def complete(request: CompletionRequest) -> list[str]:
    name, value = request.argument.get("name"), request.argument.get("value")
    prefix = value if isinstance(value, str) else ""
    return [c for c in CANDIDATES.get(str(name), []) if c.startswith(prefix)]


def reader(mime_type: str, body: dict[str, str]) -> Callable[[ResourceRead], dict[str, Any]]:
    return lambda read: contents(read.uri, mime_type, **body)


def conformance_service() -> DiaService:
    """``diaproto serve``'s service (fast synthetic voice) carrying the suite's fixtures."""
    service = DiaService(SyntheticSource(real_time_factor=0.04, first_chunk_latency=0.005))
    mcp = service.mcp
    for fixture_tool, handler in tools():
        mcp.add_tool(fixture_tool, handler)
    for resource, mime_type, body in RESOURCES:
        mcp.catalog.add_resource(resource, reader(mime_type, body))
    mcp.catalog.add_template(TEMPLATE, template_data)
    for prompt, renderer in PROMPTS:
        mcp.catalog.add_prompt(prompt, renderer)
    mcp.catalog.set_completer(complete)
    mcp.catalog.enable_tasks()
    return service


def main() -> None:
    from diaproto.adapters import start_in_thread  # noqa: PLC0415 - only when run by hand

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)  # before the server's thread starts
    handle = start_in_thread("asyncio", conformance_service(), "127.0.0.1", port)
    print(f"PORT {handle.port}", flush=True)
    signal.sigwait(signals)
    handle.stop()


if __name__ == "__main__":
    main()
