"""The page the service serves at ``/`` and ``/static/*``: files read once, at start.

The page's client is the JavaScript client of clients/js: a wheel carries it in client/
(see pyproject.toml), a source checkout has it in place.
"""

from __future__ import annotations

import re
from pathlib import Path

from diaproto.apps.serve.responses import Responder
from diaproto.runtime import Session

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
CLIENT_JS = next(
    (
        path
        for path in (
            HERE / "client" / "diaproto.js",
            HERE.parents[1] / "clients/js/src/diaproto.js",
        )
        if path.is_file()
    ),
    None,
)
STATIC_NAME = re.compile(r"^[A-Za-z0-9_-]+\.(?:html|js|css|svg|json)$")
CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
    "json": "application/json",
}


class StaticFiles:
    """The files of ``static/`` (plain names of the types above only) and the client."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.files = (
            {
                path.name: path.read_bytes()
                for path in sorted(STATIC.iterdir())
                if STATIC_NAME.match(path.name) and path.is_file()
            }
            if STATIC.is_dir()
            else {}
        )
        if CLIENT_JS is not None:
            self.files[CLIENT_JS.name] = CLIENT_JS.read_bytes()

    def serve(self, session: Session, name: str) -> None:
        body = self.files.get(name)
        if body is None:
            self.responder.error(session, "static", 404, f"no such file: {name}")
            return
        content_type = CONTENT_TYPES[name.rsplit(".", 1)[1]]
        self.responder.respond(session, "static", 200, body, content_type, cache="no-cache")
