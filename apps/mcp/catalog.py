"""Resources, prompts, completion and tasks as an application offers them over MCP.

The core (:mod:`diaproto.mcp`) lists what is offered and checks requests against it; a
:class:`Catalog` holds what answers them: a reader per resource or template, a renderer
per prompt, one completer. Each answers synchronously with a result (or raises
:class:`~diaproto.mcp.JsonRpcError`, which becomes the error the client gets).

With :meth:`Catalog.enable_tasks` (SEP-2663, 2026-07-28) a tool handler may answer a call
that may become a task (``ToolCall.task``) with :meth:`Catalog.start_task` and finish it
later (:meth:`finish_task`, :meth:`fail_task`, :meth:`task_needs_input`); the catalog
answers ``tasks/get``, ``tasks/update`` and ``tasks/cancel`` from its :class:`TaskStore`
and tells the work about cancellation and the client's input.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from diaproto.mcp import JsonRpcError
from diaproto.mcp.events import CompletionRequest, PromptGet, ResourceRead, TaskRequest, ToolCall
from diaproto.mcp.features import Features
from diaproto.mcp.jsonrpc import INVALID_PARAMS
from diaproto.mcp.prompts import Prompt
from diaproto.mcp.resources import Resource, ResourceTemplate
from diaproto.mcp.tasks import Task, TaskStore

if TYPE_CHECKING:
    from diaproto.apps.mcp.peer import McpPeer

#: Reads a resource: returns the ``resources/read`` result (``{"contents": [...]}``).
ResourceReader = Callable[[ResourceRead], dict[str, Any]]
#: Renders a prompt: returns the ``prompts/get`` result (``{"messages": [...]}``).
PromptRenderer = Callable[[PromptGet], dict[str, Any]]
#: Completes an argument: returns the candidate values, best first.
Completer = Callable[[CompletionRequest], list[str]]

MAX_COMPLETIONS = 100  # the most values one completion result may carry

FeatureRequest = ResourceRead | PromptGet | CompletionRequest | TaskRequest


@dataclass(frozen=True)
class TaskWork:
    """What a task's work wants to hear: it was cancelled; the client answered (the
    responses to requests still pending, and the time)."""

    on_cancel: Callable[[], None] | None = None
    on_input: Callable[[dict[str, dict[str, Any]], float], None] | None = None


class Catalog:
    def __init__(self) -> None:
        self.features = Features()
        self._readers: dict[str, ResourceReader] = {}  # by URI or URI template
        self._renderers: dict[str, PromptRenderer] = {}
        self._completer: Completer | None = None
        self.tasks: TaskStore | None = None
        self._work: dict[str, TaskWork] = {}
        self.clock: Callable[[], float] = time.time  # wall clock, for task timestamps

    def add_resource(self, resource: Resource, reader: ResourceReader) -> None:
        self._unique(resource.uri, self._readers, "resource")
        self.features = replace(self.features, resources=(*self.features.resources, resource))
        self._readers[resource.uri] = reader

    def add_template(self, template: ResourceTemplate, reader: ResourceReader) -> None:
        self._unique(template.uri_template, self._readers, "resource template")
        self.features = replace(self.features, templates=(*self.features.templates, template))
        self._readers[template.uri_template] = reader

    def add_prompt(self, prompt: Prompt, renderer: PromptRenderer) -> None:
        self._unique(prompt.name, self._renderers, "prompt")
        self.features = replace(self.features, prompts=(*self.features.prompts, prompt))
        self._renderers[prompt.name] = renderer

    def set_completer(self, completer: Completer) -> None:
        self.features = replace(self.features, completions=True)
        self._completer = completer

    def enable_tasks(self, store: TaskStore | None = None) -> TaskStore:
        """Offer SEP-2663 tasks (declared at 2026-07-28 as the tasks extension)."""
        self.tasks = store or TaskStore()
        self.features = replace(self.features, tasks=True)
        return self.tasks

    def start_task(
        self, peer: McpPeer, call: ToolCall, now: float, work: TaskWork | None = None
    ) -> Task:
        """Answer ``call`` with a new task (``resultType: "task"``); the work goes on and
        ends with :meth:`finish_task` or :meth:`fail_task`."""
        if self.tasks is None:
            raise ValueError("tasks are not enabled (enable_tasks)")
        task = self.tasks.create(self.clock())
        self._work[task.task_id] = work or TaskWork()
        peer.session.respond(call.request_id, {"resultType": "task", **task.envelope()})
        peer.pump(now)
        return task

    def finish_task(self, task_id: str, result: dict[str, Any]) -> bool:
        self._work.pop(task_id, None)
        return self.tasks is not None and self.tasks.complete(task_id, result, self.clock())

    def fail_task(self, task_id: str, code: int, message: str, data: Any = None) -> bool:
        self._work.pop(task_id, None)
        return self.tasks is not None and self.tasks.fail(
            task_id, code, message, self.clock(), data
        )

    def task_needs_input(self, task_id: str, requests: dict[str, dict[str, Any]]) -> bool:
        """Park a task until the client answers ``requests`` with ``tasks/update``."""
        return self.tasks is not None and self.tasks.need_input(task_id, requests, self.clock())

    def _task_request(self, peer: McpPeer, event: TaskRequest, now: float) -> None:
        store = self.tasks
        task = store.get(event.task_id, self.clock()) if store is not None else None
        if store is None or task is None:
            error = JsonRpcError(INVALID_PARAMS, "unknown task", data={"taskId": event.task_id})
            peer.session.fail(event.request_id, error.code, error.message, error.data)
            return
        if event.method == "tasks/get":
            peer.session.respond(event.request_id, task.detailed())
            return
        if event.method == "tasks/cancel":
            work = self._work.pop(task.task_id, TaskWork())
            if store.cancel(task.task_id, self.clock()) and work.on_cancel is not None:
                work.on_cancel()
        else:  # tasks/update
            responses = event.params.get("inputResponses")
            given = responses if isinstance(responses, dict) else {}
            taken = store.answer(task.task_id, given, self.clock())
            work = self._work.get(task.task_id, TaskWork())
            if taken and work.on_input is not None:
                work.on_input(taken, now)
        peer.session.respond(event.request_id, {})  # an empty ack: the state is on tasks/get

    def answer(self, event: ResourceRead | PromptGet | CompletionRequest) -> dict[str, Any]:
        """The result for one request the session handed over (raises JsonRpcError)."""
        match event:
            case ResourceRead(uri=uri):
                found = self.features.resource(uri)
                key = (
                    None
                    if found is None
                    else found.uri
                    if isinstance(found, Resource)
                    else found.uri_template
                )
                reader = self._readers.get(key) if key is not None else None
                if reader is None:
                    raise JsonRpcError(INVALID_PARAMS, "Resource not found", data={"uri": uri})
                return reader(event)
            case PromptGet(name=name):
                return self._renderers[name](event)
            case _:
                values = self._completer(event) if self._completer is not None else []
                shown = values[:MAX_COMPLETIONS]
                completion = {
                    "values": shown,
                    "total": len(values),
                    "hasMore": len(values) > len(shown),
                }
                return {"completion": completion}

    def handle(self, peer: McpPeer, event: FeatureRequest, now: float) -> None:
        if isinstance(event, TaskRequest):
            self._task_request(peer, event, now)
            return
        try:
            result = self.answer(event)
        except JsonRpcError as exc:
            peer.session.fail(event.request_id, exc.code, exc.message, exc.data)
        else:
            peer.session.respond(event.request_id, result)

    @staticmethod
    def _unique(key: str, known: dict[str, Any], what: str) -> None:
        if key in known:
            raise ValueError(f"a {what} {key!r} is already offered")
