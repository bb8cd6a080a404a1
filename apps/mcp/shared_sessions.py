"""MCP sessions any worker can serve (``serve --cluster``): the Streamable HTTP sessions'
portable state kept in the shared journal, and adopted by a worker that is asked about a
session it does not hold.

A session made by ``initialize`` on one worker keeps its portable part (what the handshake
decided, the client's log level and subscriptions: :mod:`diaproto.mcp.portable`) in the
store, refreshed when it changes and at least every third of the idle timeout. A request
with an ``Mcp-Session-Id`` this worker does not hold is answered once the store has been
asked: the session is restored here under the same id and the request handled as if it had
always been here, or the answer is 404 (no worker has it) or 503 (the store did not answer).

Calls in flight are not portable: their streams live on the worker that runs them, and a
``Last-Event-ID`` for one of them on another worker is refused (400, unknown event id), an
explicit gap, not a silent one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Protocol

from diaproto.apps.mcp.peer import McpPeer, Transport
from diaproto.apps.mcp.responses import refuse
from diaproto.errors import LocalProtocolError
from diaproto.journal import Unavailable
from diaproto.mcp import HttpRefusal, MemoryEventStore
from diaproto.mcp.portable import restore_session, session_state
from diaproto.runtime import Session
from diaproto.server.state import State

if TYPE_CHECKING:
    from diaproto.apps.mcp.service import McpService

log = logging.getLogger("diaproto.mcp")


class SharedSessions(Protocol):
    """Where sessions' portable state is kept (:class:`diaproto.cluster.RedisJournal`)."""

    def save_session(self, session_id: str, state: str, owner: str, ttl: float) -> None: ...
    def drop_session(self, session_id: str) -> None: ...
    def load_session(
        self, session_id: str, reply: Callable[[tuple[str, str] | Unavailable | None], None]
    ) -> None: ...


class SessionSharing:
    """The service's side: save what changed, adopt what another worker made."""

    def __init__(self, service: McpService, store: SharedSessions) -> None:
        self.service = service
        self.store = store

    def save(self, peer: McpPeer, now: float) -> None:
        """Keep ``peer``'s portable state in the store if it changed, or if the store's copy
        is a third of the idle timeout old (it expires with the idle timeout)."""
        if peer.session_id is None:
            return
        try:
            state = json.dumps(session_state(peer.session), sort_keys=True)
        except LocalProtocolError:
            return  # closed: nothing to move
        ttl = self.service.config.session_idle_timeout
        if state == peer.saved_state and now - peer.saved_at < ttl / 3:
            return
        peer.saved_state, peer.saved_at = state, now
        self.store.save_session(peer.session_id, state, peer.owner, ttl)

    def forget(self, session_id: str) -> None:
        self.store.drop_session(session_id)

    def adopt(self, conn: Session, session_id: str, then: Callable[[], None]) -> None:
        """Ask the store for ``session_id``; once answered, restore it here (if some
        worker has it) and call ``then`` on the loop to handle the request again. The store
        not answering is a 503; a connection closed meanwhile is left alone."""
        runtime = conn.runtime

        def reply(found: tuple[str, str] | Unavailable | None) -> None:
            runtime.call_soon_threadsafe(partial(self._answered, conn, session_id, found, then))

        self.store.load_session(session_id, reply)

    def _answered(
        self,
        conn: Session,
        session_id: str,
        found: tuple[str, str] | Unavailable | None,
        then: Callable[[], None],
    ) -> None:
        if conn.conn.state is State.CLOSED:
            return
        now = conn.runtime.now()
        if isinstance(found, Unavailable):
            retry = (("retry-after", "1"),)
            message = f"the shared session store did not answer ({found.reason}); retry"
            refuse(conn, HttpRefusal(503, message, headers=retry), now)
            conn.wake()
            return
        here = self.service.sessions.get(session_id, now) is not None  # adopted meanwhile
        if found is not None and not here and not self._restore(conn, session_id, found, now):
            conn.wake()
            return  # refused: no room
        then()
        conn.wake()

    def _restore(self, conn: Session, session_id: str, found: tuple[str, str], now: float) -> bool:
        """Make the session here; False if there is no room for it (the request refused)."""
        service = self.service
        text, owner = found
        try:
            session = restore_session(
                json.loads(text), service.info, service.tools, service.catalog.features
            )
        except (ValueError, LocalProtocolError) as exc:
            log.warning("MCP session %s in the store cannot be restored: %s", session_id, exc)
            return True  # handled as unknown: 404
        room = service.sessions.make_room(owner, lambda peer: peer.busy)
        for evicted in room.evicted:
            evicted.close(now)
        if room.refused is not None:
            log.warning("MCP session %s not adopted: no room (%s)", session_id, room.refused)
            retry = (("retry-after", str(service.config.session_retry_after)),)
            message = "every MCP session here is in use; try again later"
            refuse(conn, HttpRefusal(503, message, headers=retry), now)
            return False
        peer = McpPeer(
            service,
            session,
            conn.runtime,
            Transport.STREAMABLE,
            MemoryEventStore(),
            owner=owner,
        )
        peer.session_id = service.sessions.add(peer, now, owner=owner, session_id=session_id)
        peer.saved_state, peer.saved_at = text, now
        service.schedule_expiry(now)
        log.info("MCP session %s adopted from the shared store", session_id)
        return True
