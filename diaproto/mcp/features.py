"""What a server offers: its tools, and resources, resource templates, prompts, completion.

:class:`Features` is one immutable value, shared by every session the server opens, as is
the tuple of :class:`Tool`; the session answers the list methods from them, declares the
matching capabilities (``initialize``, ``server/discover``) and refuses requests for
anything not offered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diaproto.mcp.prompts import Prompt
from diaproto.mcp.resources import Resource, ResourceTemplate


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
class Features:
    resources: tuple[Resource, ...] = ()
    templates: tuple[ResourceTemplate, ...] = ()
    prompts: tuple[Prompt, ...] = ()
    #: ``completion/complete`` answered (the application decides the values).
    completions: bool = False
    #: SEP-2663 tasks offered at 2026-07-28 (``tasks/get``, ``update``, ``cancel``).
    tasks: bool = False

    @property
    def has_resources(self) -> bool:
        return bool(self.resources or self.templates)

    def capabilities(self, *, subscribe: bool) -> dict[str, Any]:
        """The capabilities these features declare; ``subscribe``: ``resources/subscribe``
        exists in the revision spoken (it does before 2026-07-28)."""
        declared: dict[str, Any] = {}
        if self.has_resources:
            declared["resources"] = {"listChanged": False}
            if subscribe:
                declared["resources"]["subscribe"] = True
        if self.prompts:
            declared["prompts"] = {"listChanged": False}
        if self.completions:
            declared["completions"] = {}
        return declared

    def resource(self, uri: str) -> Resource | ResourceTemplate | None:
        """What serves ``uri``: a fixed resource first, then the first template matching."""
        for resource in self.resources:
            if resource.uri == uri:
                return resource
        for template in self.templates:
            if template.match(uri) is not None:
                return template
        return None

    def prompt(self, name: str) -> Prompt | None:
        return next((prompt for prompt in self.prompts if prompt.name == name), None)
