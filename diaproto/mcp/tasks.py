"""Tasks (SEP-2663, the ``io.modelcontextprotocol/tasks`` extension of 2026-07-28).

A tool call that takes long can answer at once with a *task* (``resultType: "task"`` and
the task's fields) instead of its result; the client then polls ``tasks/get`` until the
task is terminal (its result or error inlined), answers the input a task waits for with
``tasks/update`` (``inputResponses`` keyed as the task's ``inputRequests``), and may
``tasks/cancel`` it. The server alone decides to create a task, for a tool that supports
tasks and a request whose client capabilities name the extension.

:class:`TaskStore` is the state of every task of a server, pure like the rest of the core:
the caller gives the wall-clock time (seconds since the epoch) for the timestamps and for
expiry. A task stays readable for its ``ttlMs`` after its last change.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
TASK_METHODS = ("tasks/get", "tasks/update", "tasks/cancel")

WORKING = "working"
INPUT_REQUIRED = "input_required"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
TERMINAL = (COMPLETED, FAILED, CANCELLED)

DEFAULT_TTL_MS = 10 * 60 * 1000
DEFAULT_POLL_MS = 200


def negotiated(capabilities: dict[str, Any]) -> bool:
    """Did a client with these capabilities declare the tasks extension?"""
    extensions = capabilities.get("extensions")
    return isinstance(extensions, dict) and TASKS_EXTENSION in extensions


def _iso(wall: float) -> str:
    return (
        datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


@dataclass(slots=True)
class Task:
    task_id: str
    created: float  # wall-clock seconds
    updated: float
    ttl_ms: int
    poll_ms: int
    status: str = WORKING
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    input_requests: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def envelope(self) -> dict[str, Any]:
        """The task's own fields (what a ``CreateTaskResult`` carries, flat)."""
        return {
            "taskId": self.task_id,
            "status": self.status,
            "createdAt": _iso(self.created),
            "lastUpdatedAt": _iso(self.updated),
            "ttlMs": self.ttl_ms,
            "pollIntervalMs": self.poll_ms,
        }

    def detailed(self) -> dict[str, Any]:
        """What ``tasks/get`` answers: the envelope, plus what the status calls for."""
        body = self.envelope()
        if self.status == COMPLETED and self.result is not None:
            body["result"] = self.result
        elif self.status == FAILED and self.error is not None:
            body["error"] = self.error
        elif self.status == INPUT_REQUIRED:
            body["inputRequests"] = dict(self.input_requests)
        return body


class TaskStore:
    def __init__(
        self,
        *,
        ttl_ms: int = DEFAULT_TTL_MS,
        poll_ms: int = DEFAULT_POLL_MS,
        new_id: Callable[[], str] = lambda: secrets.token_hex(16),
    ) -> None:
        self.ttl_ms = ttl_ms
        self.poll_ms = poll_ms
        self._new_id = new_id
        self._tasks: dict[str, Task] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def create(self, wall: float) -> Task:
        """A new working task, readable at once (it exists before anyone hears of it)."""
        self.expire(wall)
        task_id = self._new_id()
        while task_id in self._tasks:  # only a broken id source repeats itself
            task_id = self._new_id()
        task = Task(task_id, wall, wall, self.ttl_ms, self.poll_ms)
        self._tasks[task_id] = task
        return task

    def get(self, task_id: str, wall: float) -> Task | None:
        self.expire(wall)
        return self._tasks.get(task_id)

    def complete(self, task_id: str, result: dict[str, Any], wall: float) -> bool:
        """The work finished (a tool error too: ``result.isError``). False if the task is
        gone or already terminal (a cancelled task stays cancelled)."""
        task = self._live(task_id)
        if task is None:
            return False
        task.result = result
        return self._move(task, COMPLETED, wall)

    def fail(self, task_id: str, code: int, message: str, wall: float, data: Any = None) -> bool:
        """The work could not run: a protocol-level error, inlined as ``error``."""
        task = self._live(task_id)
        if task is None:
            return False
        task.error = {"code": code, "message": message}
        if data is not None:
            task.error["data"] = data
        return self._move(task, FAILED, wall)

    def need_input(self, task_id: str, requests: dict[str, dict[str, Any]], wall: float) -> bool:
        """The work waits for the client to run ``requests`` (see ``mrtr.input_request``)."""
        task = self._live(task_id)
        if task is None or not requests:
            return False
        task.input_requests = dict(requests)
        return self._move(task, INPUT_REQUIRED, wall)

    def answer(
        self, task_id: str, responses: dict[str, Any], wall: float
    ) -> dict[str, dict[str, Any]]:
        """Take the client's ``tasks/update``: the responses to requests still pending
        (others are ignored). Once none is pending the task is working again."""
        task = self._live(task_id)
        if task is None or task.status != INPUT_REQUIRED:
            return {}
        taken = {
            key: value
            for key, value in responses.items()
            if key in task.input_requests and isinstance(value, dict)
        }
        for key in taken:
            del task.input_requests[key]
        if taken:
            self._move(task, WORKING if not task.input_requests else INPUT_REQUIRED, wall)
        return taken

    def cancel(self, task_id: str, wall: float) -> bool:
        """Cancel a task; True if it was still running (its work must stop now)."""
        task = self._live(task_id)
        if task is None:
            return False
        task.input_requests.clear()
        return self._move(task, CANCELLED, wall)

    def expire(self, wall: float) -> None:
        """Forget tasks whose ``ttlMs`` since their last change has passed."""
        for task_id, task in list(self._tasks.items()):
            if wall - task.updated > task.ttl_ms / 1000:
                del self._tasks[task_id]

    def _live(self, task_id: str) -> Task | None:
        task = self._tasks.get(task_id)
        return None if task is None or task.terminal else task

    @staticmethod
    def _move(task: Task, status: str, wall: float) -> bool:
        task.status = status
        task.updated = max(task.updated, wall)
        return True
