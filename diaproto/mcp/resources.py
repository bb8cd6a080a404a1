"""Resources a server offers: fixed URIs and URI templates (RFC 6570, simple ``{name}``).

The session lists them (``resources/list``, ``resources/templates/list``) and tracks
subscriptions itself; reading one is the application's decision (a
:class:`~diaproto.mcp.events.ResourceRead` event). :meth:`ResourceTemplate.match` gives a
URI's variables, so an application can route a read without parsing URIs twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_VARIABLE = re.compile(r"\{([A-Za-z0-9_]+)\}")


@dataclass(frozen=True, slots=True)
class Resource:
    """A resource at a fixed URI."""

    uri: str
    name: str
    title: str | None = None
    description: str | None = None
    mime_type: str | None = None

    def describe(self) -> dict[str, Any]:
        return _describe({"uri": self.uri, "name": self.name}, self)


@dataclass(frozen=True, slots=True)
class ResourceTemplate:
    """A family of resources: ``uri_template`` names its variables as ``{name}``, each
    matching one or more characters other than ``/`` (RFC 6570 level 1)."""

    uri_template: str
    name: str
    title: str | None = None
    description: str | None = None
    mime_type: str | None = None

    def describe(self) -> dict[str, Any]:
        return _describe({"uriTemplate": self.uri_template, "name": self.name}, self)

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(_VARIABLE.findall(self.uri_template))

    def match(self, uri: str) -> dict[str, str] | None:
        """The template's variables in ``uri``, or None when it is not one of ours."""
        pattern, last = [], 0
        for variable in _VARIABLE.finditer(self.uri_template):
            pattern.append(re.escape(self.uri_template[last : variable.start()]))
            pattern.append(f"(?P<{variable.group(1)}>[^/]+)")
            last = variable.end()
        pattern.append(re.escape(self.uri_template[last:]))
        found = re.fullmatch("".join(pattern), uri)
        return None if found is None else found.groupdict()


def _describe(body: dict[str, Any], item: Resource | ResourceTemplate) -> dict[str, Any]:
    if item.title is not None:
        body["title"] = item.title
    if item.description is not None:
        body["description"] = item.description
    if item.mime_type is not None:
        body["mimeType"] = item.mime_type
    return body
