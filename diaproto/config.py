"""Every tunable of a connection in one frozen object, with the defaults we ship."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a peer may make us hold. Breaking one is a clear error."""

    max_header_bytes: int = 16 * 1024  # 431 beyond
    max_body_bytes: int = 1024 * 1024  # 413 beyond
    max_message_bytes: int = 1024 * 1024  # WebSocket close 1009 beyond
    max_buffered_inbound: int = 4 * 1024 * 1024  # unread events; the peer is paused beyond


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. ``None`` disables a timer."""

    handshake: float | None = 10.0  # request headers must be complete within this
    idle: float | None = 300.0  # no bytes either way for this long: close
    ping_interval: float | None = 20.0  # WebSocket ping after this much quiet from the peer
    ping_timeout: float | None = 20.0  # no pong (or any byte) within this: the peer is dead
    # Our close frame unanswered: drop the transport. Also how long a closed connection may
    # take to flush its last bytes before the transport is aborted.
    close_timeout: float | None = 5.0
    sse_heartbeat: float | None = 15.0  # comment line on a quiet SSE stream
    # Bytes of ours wait for the peer and it has taken none of them for this long: it stopped
    # reading (WebSocket, SSE or a streamed body): the connection is dropped, the transport
    # aborted. Only while bytes wait: a quiet connection is the other timers' business.
    write_timeout: float | None = 30.0


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Batching and backpressure settings of the outbound scheduler."""

    batch_bytes: int = 64 * 1024  # cap on one coalesced write
    linger: float = 0.002  # low classes wait at most this long to fill a batch, under load only
    quantum: int = 8 * 1024  # deficit round-robin quantum, bytes
    write_window: int = 64 * 1024  # bytes released to the transport before we hold back
    high_watermark: int = 1024 * 1024  # queued + in flight: producers are paused above
    low_watermark: int = 256 * 1024  # ... and resumed below
    max_buffered: int = 4 * 1024 * 1024  # hard budget per connection; never exceeded

    def __post_init__(self) -> None:
        if self.max_buffered <= 0:
            msg = "max_buffered must be positive"
            raise ValueError(msg)
        if not 0 <= self.low_watermark <= self.high_watermark <= self.max_buffered:
            msg = "need 0 <= low_watermark <= high_watermark <= max_buffered"
            raise ValueError(msg)
        if self.batch_bytes <= 0 or self.quantum <= 0 or self.write_window <= 0:
            msg = "batch_bytes, quantum and write_window must be positive"
            raise ValueError(msg)
        if self.linger < 0:
            msg = "linger must not be negative"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """Settings of one server or client connection."""

    limits: Limits = field(default_factory=Limits)
    timeouts: Timeouts = field(default_factory=Timeouts)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    sse_retry_ms: int | None = 2000  # sent once at the start of every SSE stream
    # ``SO_SNDBUF`` in bytes that the server adapters give every accepted TCP socket. Linux
    # doubles the value (bookkeeping) and stops autotuning that socket. ``None``: the kernel's
    # autotuned buffer, with unsent bytes bounded anyway (``TCP_NOTSENT_LOWAT``). A small one
    # caps the bytes a slow reader has queued ahead of a control message, at a throughput cost
    # on long round trips (bytes in flight are bounded too).
    send_buffer: int | None = None

    def __post_init__(self) -> None:
        if self.send_buffer is not None and self.send_buffer <= 0:
            msg = "send_buffer must be positive (or None: the kernel's default)"
            raise ValueError(msg)
