"""What can go wrong, and the WebSocket close codes that say so on the wire.

Every protocol, replay and MCP error diaproto raises derives from :class:`DiaprotoError`
(a constructor given an impossible setting, such as ``Limits(max_body_bytes=0)``, raises
``ValueError`` like any Python API). As in h11:
:class:`LocalProtocolError` means *you* (the caller) misused the API;
:class:`RemoteProtocolError` means *the peer* sent something invalid. A remote error
never escapes ``receive_data``: it is turned into an event and an answer on the wire
(an HTTP status or a :class:`CloseCode`). The hint fields say which answer.
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    """WebSocket close codes (RFC 6455 section 7.4.1), named as in ``websockets``."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001  # the server is shutting down
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005  # never sent: the close frame had no code
    ABNORMAL_CLOSURE = 1006  # never sent: the transport ended without a close frame
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013


class DiaprotoError(Exception):
    """The root of every exception diaproto raises."""


class ProtocolError(DiaprotoError):
    """Base class. ``http_status`` and ``close_code`` hint at the answer to send."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        close_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.close_code = close_code

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, http_status={self.http_status}, "
            f"close_code={self.close_code})"
        )


class LocalProtocolError(ProtocolError):
    """The caller used the API wrongly (sent in the wrong state, broke a budget, ...)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes or messages that break the protocol or a configured limit."""


class ReplayGap(DiaprotoError):
    """A resume asked for messages that have already left the replay window."""

    def __init__(self, stream_id: int, after: int, oldest_available: int) -> None:
        super().__init__(
            f"stream {stream_id}: cannot resume after {after}; "
            f"oldest message still held is {oldest_available}"
        )
        self.stream_id = stream_id
        self.after = after
        self.oldest_available = oldest_available
