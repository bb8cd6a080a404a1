"""The pump: how an adapter drives one connection, written once for every runtime.

A runtime supplies only I/O (a :class:`Transport`: write, say how many bytes it still holds,
pause or resume reading, close, abort) and a ``call_later``; the decisions are here:

- every core event goes to the application, and an application that raises loses only that
  connection (``CloseCode.INTERNAL_ERROR``), never the server;
- a step writes what the core produced until the transport holds bytes (the rest stays in
  the core, where priorities still apply), and tells the core what the transport holds;
- one timer per connection at the core's next deadline, re-armed only when that moved;
- reading stops while the core does not ``wants_data`` (TCP backpressure);
- once ``finished``, the transport closes after what it holds, or is dropped at the core's
  flush deadline.

Nothing here decides protocol: that is the core's. The anyio adapter, whose writes are awaited
in a task instead of completing through callbacks, uses the same pieces (:func:`dispatch`,
:func:`write_deadline`, :func:`past`) around its own loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from diaproto.errors import CloseCode
from diaproto.runtime import Application, Cancellable, Session
from diaproto.server import ServerConnection

log = logging.getLogger("diaproto.adapters")

PAUSED_POLL = 0.05  # seconds between timer checks while a due deadline waits on the peer

CallLater = Callable[[float, Callable[[], None]], Cancellable]


def now() -> float:
    """The core's clock (relative delays are computed from it, never from a loop's clock)."""
    return time.monotonic()


def past(deadline: float | None) -> bool:
    return deadline is not None and now() >= deadline


def dispatch(app: Application, session: Session) -> int:
    """Hand every pending event of the connection to the application; returns how many."""
    conn = session.conn
    delivered = 0
    while (event := conn.next_event()) is not None:
        delivered += 1
        try:
            app.handle_event(session, event)
        except Exception:
            # The application's bug must not take the server down: this connection ends.
            log.exception("application failed on %s from %s", type(event).__name__, session.peer)
            conn.close(now(), CloseCode.INTERNAL_ERROR, "internal error")
    return delivered


def write_deadline(conn: ServerConnection) -> float | None:
    """What a blocked write waits for: the next core deadline (the write timeout among them)
    or, once the connection finished, the flush deadline past which it is dropped."""
    return conn.flush_deadline if conn.finished else conn.next_deadline()


class DeadlineTimer:
    """A connection's one timer, at the core's next deadline; re-armed only when it moved."""

    __slots__ = ("_call_later", "_callback", "_deadline", "handle")

    def __init__(self, call_later: CallLater, callback: Callable[[], None]) -> None:
        self._call_later = call_later
        self._callback = callback
        self._deadline: float | None = None
        self.handle: Cancellable | None = None

    def arm(self, deadline: float | None, *, waiting: bool = False) -> None:
        """Fire at ``deadline`` (None: never). ``waiting``: the transport holds bytes."""
        if deadline == self._deadline and (deadline is None or self.handle is not None):
            return
        self.cancel()
        if deadline is None:
            return
        delay = deadline - now()
        if delay <= 0.0 and waiting:
            # Due but waiting on the peer: poll rather than spin, and never go without a
            # timer (the write timeout must fire while the peer does not read).
            delay = PAUSED_POLL
        self._deadline = deadline
        # Relative: the core's clock is time.monotonic(), a loop's own clock may not be.
        self.handle = self._call_later(max(delay, 0.0), self._fire)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self._deadline = None

    def _fire(self) -> None:
        self.handle = None
        self._deadline = None
        self._callback()


class Transport(Protocol):
    """The I/O of one connection, as a runtime provides it to the :class:`Pump`."""

    @property
    def closed(self) -> bool:
        """Closed by the adapter or lost: nothing more is written, events are still handed out."""
        ...

    def held(self) -> int:
        """Bytes written and not yet taken by the kernel (pushing them on, where the runtime
        leaves that to the adapter)."""
        ...

    def write(self, data: bytes) -> None: ...

    def set_reading(self, wanted: bool) -> None: ...

    def close(self) -> None:
        """Close once what the transport holds has left."""
        ...

    def abort(self) -> None:
        """Drop the connection now, discarding what the peer did not take."""
        ...


class Pump:
    """Drives one connection over a :class:`Transport`; every method runs on the loop thread.

    The adapter calls :meth:`step` after each read (``receive_data``/``receive_eof``) and each
    drain of the transport, and :meth:`wake` for the session's ``wake()`` (a write in place,
    then a step only if one is needed); the timer calls :meth:`on_timer`."""

    __slots__ = (
        "_in_place",
        "_scheduled",
        "_soon",
        "_stepping",
        "_woken_again",
        "app",
        "conn",
        "session",
        "timer",
        "transport",
    )

    def __init__(
        self,
        app: Application,
        session: Session,
        transport: Transport,
        soon: Callable[[Callable[[], None]], None],
        call_later: CallLater,
    ) -> None:
        self.app = app
        self.session = session
        self.conn = session.conn
        self.transport = transport
        self.timer = DeadlineTimer(call_later, self.on_timer)
        self._soon = soon  # schedules a callback on the loop, from the loop thread
        self._stepping = False
        self._scheduled = False
        self._in_place = False  # inside a wake's write in place: the application waits
        self._woken_again = False  # a wake came while a callback was already scheduled

    def wake(self) -> None:
        """The session's ``wake()``: output the application queued outside a step leaves.
        Inside a step, nothing: the step's own loop writes what was produced.

        The first wake writes in place what the core says is due now
        (:meth:`_write_in_place`): no loop iteration between a producer's send and the
        wire. Then one callback soon, however many wakes come before it runs: a whole step
        if events wait or the application woke again meanwhile, else nothing more."""
        if self._stepping or self._in_place:
            return
        if self._scheduled:
            self._woken_again = True
            return
        self._scheduled = True
        self._woken_again = False
        if self._write_in_place():
            self._soon(self._settle)
        else:
            self._soon(self._scheduled_step)

    def _write_in_place(self) -> bool:
        """Write what the core releases now, until the transport holds bytes; True when that
        left nothing for a step (the core is quiet; the timer is re-armed here).

        The core decides what leaves (priorities, batching, linger, the write window, credit:
        ``data_to_send`` is the same call a step makes); only the moment is earlier. Events
        it raises wait for a step, so the application is never re-entered from its own
        ``wake()``."""
        conn, transport = self.conn, self.transport
        if transport.closed:
            return False
        self._in_place = True
        try:
            holding = self._write(hand_out_events=False)
        finally:
            self._in_place = False
        if transport.closed or conn.finished or not conn.quiet:
            return False
        transport.set_reading(conn.wants_data)
        self.timer.arm(conn.next_deadline(), waiting=holding)
        return True

    def _settle(self) -> None:
        """After a write in place that left the core quiet: a step only for later wakes."""
        self._scheduled = False
        if self._woken_again:
            self.step()

    def _scheduled_step(self) -> None:
        self._scheduled = False
        self.step()

    def dispatch(self) -> int:
        return dispatch(self.app, self.session)

    def step(self) -> None:
        """Events to the application, output to the transport, the timer re-armed."""
        conn, transport = self.conn, self.transport
        # A wake from the application while its events are handed out waits for this
        # step's own write loop (no write in place, no second step).
        self._stepping = True
        try:
            self.dispatch()
            if transport.closed:
                return  # a callback after the end still gets its events handed out
            holding = self._write()
        finally:
            self._stepping = False
        transport.set_reading(conn.wants_data)  # never once finished
        if conn.finished:
            self._finish(holding)
        else:
            self.timer.arm(conn.next_deadline(), waiting=holding)

    def on_timer(self) -> None:
        # How much the peer took meanwhile: progress restarts the core's write timeout.
        self._report_held()
        self.conn.handle_timer(now())
        self.step()

    def lost(self) -> None:
        """The transport is gone: the core hears EOF (and reports ConnectionClosed).

        Found by a write in place (inside the application's ``wake()``), the events wait
        for the step scheduled by that wake."""
        self.conn.receive_eof(now())
        if not self._in_place:
            self.dispatch()

    def abort(self) -> None:
        """Drop the transport without waiting for the peer (a peer that stopped reading, a
        flush past its deadline, the end of shutdown)."""
        self.timer.cancel()
        self.transport.abort()

    def _write(self, *, hand_out_events: bool = True) -> bool:
        """Write until the transport holds bytes; True if it does.

        While it holds bytes nothing more leaves the core (its drain runs the next step), but
        events are still handed out: a producer sees StreamPaused without waiting for the
        peer to read. Without ``hand_out_events`` (a write in place) they wait for a step."""
        conn, transport = self.conn, self.transport
        # Reported empty: nothing was written since, so it still is (no need to ask).
        holding = self._report_held() if conn.transport_buffered else False
        while not holding:
            data = conn.data_to_send(now())
            # Taking a batch can resume paused producers.
            delivered = self.dispatch() if hand_out_events else 0
            if data:
                transport.write(data)
                holding = self._report_held()
            elif not delivered:
                break  # nothing written and no event that could have produced output
        return holding

    def _report_held(self) -> bool:
        """The write window and budget count what the transport holds; True if any."""
        held = self.transport.held()
        self.conn.set_transport_buffered(held, now())
        return held > 0

    def _finish(self, holding: bool) -> None:
        if not holding:
            self.timer.cancel()
            self.transport.close()
            return
        # The last bytes get until the core's flush deadline; then the transport is dropped.
        deadline = self.conn.flush_deadline
        if past(deadline):
            self.abort()
        else:
            self.timer.arm(deadline)  # its step finds the deadline past
