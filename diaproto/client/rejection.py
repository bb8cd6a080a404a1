"""An HTTP answer that refuses the connection, gathered while its body arrives.

Both clients receive it the same way: status and headers first, the body in pieces, then
one :class:`~diaproto.events.Rejected` event with all of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diaproto.events import Headers, Rejected


@dataclass(slots=True)
class PendingRejection:
    status: int
    headers: Headers
    body: list[bytes] = field(default_factory=list)

    def event(self) -> Rejected:
        return Rejected(self.status, self.headers, b"".join(self.body))
