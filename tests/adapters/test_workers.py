"""The worker threads every runtime gives an application (``Runtime.start_worker``), held to
one policy: a worker's ``call_soon_threadsafe`` returns once the loop ran the callback; at
most ``WORKER_THREADS`` run at once and the rest wait their turn; a worker started after
shutdown is refused; stopping the server waits for the running ones.

The runtime is taken from a session, as an application sees it. Conditions, not timings."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from support import POLL_LIMIT, STOP_LIMIT, Echo, serving, start, wait_until

from diaproto.adapters._workers import WORKER_THREADS
from diaproto.events import Event
from diaproto.runtime import Runtime, ServerHandle, Session


class RuntimeProbe(Echo):
    """Echo that keeps the runtime its sessions were given."""

    def __init__(self) -> None:
        super().__init__()
        self.runtime: Runtime | None = None

    def handle_event(self, session: Session, event: Event) -> None:
        self.runtime = session.runtime
        super().handle_event(session, event)


def runtime_of(handle: ServerHandle, app: RuntimeProbe) -> Runtime:
    response = httpx.get(f"http://127.0.0.1:{handle.port}/", trust_env=False)
    assert response.status_code == 200 and app.runtime is not None
    return app.runtime


def test_a_worker_call_returns_once_the_loop_ran_it(runtime_or_uvloop: str) -> None:
    app = RuntimeProbe()
    with serving(runtime_or_uvloop, app) as server:
        loop_runtime = runtime_of(server, app)
        loop_thread = server.call(threading.get_ident)
        seen: list[int] = []
        done = threading.Event()

        def worker() -> None:
            assert threading.get_ident() != loop_thread
            loop_runtime.call_soon_threadsafe(lambda: seen.append(threading.get_ident()))
            assert seen == [loop_thread]  # it ran, on the loop, before the call returned
            done.set()

        server.call(lambda: loop_runtime.start_worker(worker, name="probe"))
        assert done.wait(POLL_LIMIT)


def test_workers_past_the_bound_wait_for_a_free_thread(runtime: str) -> None:
    app = RuntimeProbe()
    total = WORKER_THREADS + 8
    release = threading.Event()
    lock = threading.Lock()
    counts = {"running": 0, "most": 0, "done": 0}

    def worker() -> None:
        with lock:
            counts["running"] += 1
            counts["most"] = max(counts["most"], counts["running"])
        release.wait(POLL_LIMIT)
        with lock:
            counts["running"] -= 1
            counts["done"] += 1

    with serving(runtime, app) as server:
        loop_runtime = runtime_of(server, app)

        def start_all() -> None:
            for n in range(total):
                loop_runtime.start_worker(worker, name=f"bounded-{n}")

        try:
            server.call(start_all)
            wait_until(lambda: counts["running"] == WORKER_THREADS, "the bound is reached")
            # None of the others can start before one of these returns: none has.
            assert counts["done"] == 0 and counts["running"] == WORKER_THREADS
        finally:
            release.set()
        wait_until(lambda: counts["done"] == total, "every worker ran")
    assert counts["most"] == WORKER_THREADS


def test_a_worker_started_after_shutdown_is_refused(runtime: str) -> None:
    app = RuntimeProbe()
    with serving(runtime, app) as server:
        loop_runtime = runtime_of(server, app)
    started = threading.Event()
    with pytest.raises(RuntimeError):
        loop_runtime.start_worker(started.set, name="late")
    assert not started.is_set()


def test_stopping_waits_for_the_running_workers(runtime: str) -> None:
    app = RuntimeProbe()
    server = start(runtime, app)
    loop_runtime = runtime_of(server, app)
    running, returned = threading.Event(), threading.Event()

    def worker() -> None:
        # A producer handing chunks to the loop until the loop is gone, then returning.
        running.set()
        while True:
            try:
                loop_runtime.call_soon_threadsafe(lambda: None)
            except RuntimeError:
                break
            time.sleep(0.01)
        returned.set()

    server.call(lambda: loop_runtime.start_worker(worker, name="producer"))
    assert running.wait(POLL_LIMIT)
    assert server.stop(STOP_LIMIT), "the server thread did not end"
    assert returned.is_set()  # joined: stop() returned after the worker did
