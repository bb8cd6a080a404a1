"""Prompts a server offers: templates of messages a client fills in with arguments.

The session lists them (``prompts/list``) and checks a ``prompts/get`` against them (an
unknown name or a missing required argument is -32602); producing the messages is the
application's decision (a :class:`~diaproto.mcp.events.PromptGet` event).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class PromptArgument:
    name: str
    description: str | None = None
    required: bool = False

    def describe(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "required": self.required}
        if self.description is not None:
            body["description"] = self.description
        return body


@dataclass(frozen=True, slots=True)
class Prompt:
    name: str
    title: str | None = None
    description: str | None = None
    arguments: tuple[PromptArgument, ...] = ()

    def describe(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name}
        if self.title is not None:
            body["title"] = self.title
        if self.description is not None:
            body["description"] = self.description
        if self.arguments:
            body["arguments"] = [argument.describe() for argument in self.arguments]
        return body

    def missing(self, arguments: dict[str, Any]) -> list[str]:
        """The required arguments ``arguments`` lacks."""
        return [arg.name for arg in self.arguments if arg.required and arg.name not in arguments]
