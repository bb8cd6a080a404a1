"""The runtime-neutral application interface: what every adapter gives an application.

An application is written once against :class:`Application`, :class:`Session` and
:class:`Runtime` and runs unchanged on every adapter (asyncio Protocols, anyio on trio,
tornado, raw sockets). Types only: no I/O here.

- The adapter owns sockets, one timer per connection, the event loop and worker threads.
- It hands every core event of a connection to :meth:`Application.handle_event`, on the loop
  thread, together with that connection's :class:`Session`.
- The application answers through ``session.conn`` (the core's :class:`ServerConnection`:
  ``respond``, ``accept_sse``, ``open_stream``, ``send``, ...) and then calls
  ``session.wake()`` when it did so outside ``handle_event`` (from a callback), so the adapter
  writes what the core produced. Inside ``handle_event`` the adapter writes afterwards anyway.
- Blocking work (a model generating audio) runs through ``runtime.start_worker``; a worker
  hands results back to the loop with ``runtime.call_soon_threadsafe``. Backpressure reaches
  the producer as ``StreamPaused`` / ``StreamResumed`` events.
- A connection's end is the core's ``ConnectionClosed`` event; the adapter turns a reset or
  a vanished peer into one too (through ``receive_eof``). Nothing else signals it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from diaproto.events import Event
from diaproto.server import ServerConnection

T = TypeVar("T")


class Connection(Protocol):
    """The pump contract every connection object meets, server and client alike.

    Bytes and the time go in; events and bytes come out. ``next_event`` takes no time: an
    event carries the ``now`` of the ``receive_data`` (or ``handle_timer``) call that
    produced it. The adapter loops: feed what the transport read, drain ``next_event`` until
    None, write ``data_to_send``, re-arm one timer at ``next_deadline``, and stop once
    ``finished``.
    """

    def receive_data(self, data: bytes, now: float) -> None: ...
    def receive_eof(self, now: float) -> None: ...
    def next_event(self) -> Event | None: ...
    def data_to_send(self, now: float) -> bytes: ...
    def next_deadline(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...
    @property
    def finished(self) -> bool: ...


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Runtime(Protocol):
    """What an application may ask of the event loop it runs on."""

    def now(self) -> float:
        """Monotonic seconds: the clock every ``now`` argument of the core takes."""
        ...

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the loop thread, soon; callable from any thread.

        Called from a worker, it returns once the loop has run the callback: a producer can
        never run ahead of the loop (and so of the backpressure the loop sees). Every adapter
        keeps this contract.
        """
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        """Run ``callback`` on the loop thread after ``delay`` seconds."""
        ...

    def start_worker(self, target: Callable[[], None], name: str = "worker") -> None:
        """Run a blocking function on a worker thread (not the loop).

        Every adapter keeps one policy: at most 256 workers run at once (more wait, in
        order, for a free one); every thread is tracked and joined (up to 2 s) when the
        server stops; after shutdown this raises ``RuntimeError``."""
        ...


class Session(Protocol):
    """One connection, as the application sees it."""

    @property
    def conn(self) -> ServerConnection: ...

    @property
    def runtime(self) -> Runtime: ...

    @property
    def peer(self) -> str:
        """The peer's address, for logs."""
        ...

    def wake(self) -> None:
        """The core has output ready (sent from a callback): write it soon. Loop thread."""
        ...


class Application(Protocol):
    """An application may also define ``started(runtime)``: every adapter calls it once, on
    the loop thread, when the server listens (for work that is no connection's own, such as
    taking jobs from a queue)."""

    def handle_event(self, session: Session, event: Event) -> None:
        """One core event of one connection, on the loop thread."""
        ...

    def shutdown(self) -> None:
        """The server is stopping: stop producers (connections are being closed with 1001)."""
        ...


class ServerHandle(Protocol):
    """A server an adapter runs on a thread of its own (``start_in_thread``): for tests,
    benchmarks, and embedding in a program that has no event loop.

    Every adapter module offers ``start_in_thread(app, host="127.0.0.1", port=0, config=None)``
    returning one of these, and ``run(app, host, port, *, config=None, ready=None)`` that
    serves in the calling thread until SIGINT or SIGTERM.
    """

    @property
    def port(self) -> int: ...

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the server's loop thread and return its result."""
        ...

    def stop(self, timeout: float = 15.0) -> bool:
        """Shut down gracefully (1001 to every connection); False if it took too long."""
        ...
