"""Service workers sharing one real Valkey, each on its own server thread (anyio adapter)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from server_fixture import RunningApp, running_app
from support import fast_source

from diaproto.apps.serve.app import DiaService
from diaproto.apps.serve.generation import Generation
from diaproto.apps.serve.mirror import MirroredGeneration
from diaproto.cluster import RedisJournal

GRACE = 1.0  # short: a generation kept going is kept by its listener elsewhere


@dataclass
class Worker:
    app: RunningApp
    service: DiaService
    journal: RedisJournal

    def call(self, function: Any, *args: Any) -> Any:
        return self.app.call(function, *args)

    def generations(self) -> list[Generation]:
        return list(self.call(lambda: list(self.service.generations.live.values())))

    def mirrors(self) -> list[MirroredGeneration]:
        found = self.call(lambda: list(self.service.generations.mirrors.values()))
        return [m for m in found if isinstance(m, MirroredGeneration)]


@contextmanager
def shared_workers(url: str, *names: str) -> Iterator[list[Worker]]:
    """One worker per name, each with its own journal on ``url`` (MCP sessions shared too)."""
    with ExitStack() as stack:
        workers = []
        for name in names:
            journal = RedisJournal(url, worker=name)
            stack.callback(journal.close)
            service = DiaService(
                fast_source(), journal=journal, shared_sessions=journal, resume_grace=GRACE
            )
            app = stack.enter_context(running_app(service))
            workers.append(Worker(app, service, journal))
        yield workers
