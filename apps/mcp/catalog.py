"""Resources, prompts and completion as an application offers them over MCP.

The core (:mod:`diaproto.mcp`) lists what is offered and checks requests against it; a
:class:`Catalog` holds what answers them: a reader per resource or template, a renderer
per prompt, one completer. Each answers synchronously with a result (or raises
:class:`~diaproto.mcp.JsonRpcError`, which becomes the error the client gets).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from diaproto.mcp import JsonRpcError
from diaproto.mcp.features import Features
from diaproto.mcp.jsonrpc import INVALID_PARAMS
from diaproto.mcp.prompts import Prompt
from diaproto.mcp.resources import Resource, ResourceTemplate
from diaproto.mcp.session import CompletionRequest, PromptGet, ResourceRead

if TYPE_CHECKING:
    from diaproto.apps.mcp.peer import McpPeer

#: Reads a resource: returns the ``resources/read`` result (``{"contents": [...]}``).
ResourceReader = Callable[[ResourceRead], dict[str, Any]]
#: Renders a prompt: returns the ``prompts/get`` result (``{"messages": [...]}``).
PromptRenderer = Callable[[PromptGet], dict[str, Any]]
#: Completes an argument: returns the candidate values, best first.
Completer = Callable[[CompletionRequest], list[str]]

MAX_COMPLETIONS = 100  # the most values one completion result may carry


class Catalog:
    def __init__(self) -> None:
        self.features = Features()
        self._readers: dict[str, ResourceReader] = {}  # by URI or URI template
        self._renderers: dict[str, PromptRenderer] = {}
        self._completer: Completer | None = None

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

    def handle(
        self, peer: McpPeer, event: ResourceRead | PromptGet | CompletionRequest, now: float
    ) -> None:
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
