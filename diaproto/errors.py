"""The two kinds of error the core raises, each with a hint for the answer to give.

As in h11: :class:`LocalProtocolError` means *you* (the caller) misused the API;
:class:`RemoteProtocolError` means *the peer* sent something invalid. A remote error
never escapes ``receive_data``: it is turned into an event and an answer on the wire
(an HTTP status or a WebSocket close code). The hint fields say which answer.
"""

from __future__ import annotations


class ProtocolError(Exception):
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


class ReplayGap(Exception):
    """A resume asked for messages that have already left the replay window."""

    def __init__(self, stream_id: int, after: int, oldest_available: int) -> None:
        super().__init__(
            f"stream {stream_id}: cannot resume after {after}; "
            f"oldest message still held is {oldest_available}"
        )
        self.stream_id = stream_id
        self.after = after
        self.oldest_available = oldest_available
