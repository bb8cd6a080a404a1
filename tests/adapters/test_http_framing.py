"""HTTP/1.1 framing that could smuggle a request or stall a connection, on every runtime
(the ``runtime`` fixture), against the Dia service over raw sockets.

RFC 9112 6.1: a request with both Content-Length and Transfer-Encoding is refused with 400 and
the connection closed, so a request hidden in its body is never answered. A version other
than HTTP/1.x gets 505; a chunk size past 64 bits gets 400 as soon as its line is read.
"""

from __future__ import annotations

import logging

import pytest
from conformance_support import RecordingService, healthz, raw_http
from support import serving, wait_until

from diaproto.config import ConnectionConfig, Timeouts

# The handshake timeout is far beyond the client's wait, so only an immediate answer passes
# (a request left hanging would be cut off by the client, never answered with 408 in time).
PATIENT = ConnectionConfig(timeouts=Timeouts(handshake=600.0))
HIDDEN = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def statuses(answer: bytes) -> list[int]:
    """The status of every response in the bytes (a body of ours never holds 'HTTP/1.1 ')."""
    return [int(part[:3]) for part in answer.split(b"HTTP/1.1 ")[1:]]


def logged(caplog: pytest.LogCaptureFixture, message: str) -> None:
    """The service logs the refusal (on its loop thread, so possibly just after the answer)."""
    wait_until(
        lambda: any(message in record.getMessage() for record in caplog.records),
        f"the service logged {message!r}",
    )


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 40\r\n",
    ],
)
def test_content_length_with_transfer_encoding_is_400_and_closed(
    runtime: str, framing: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="diaproto.serve")
    request = b"POST /v1/stream HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n0\r\n\r\n" + HIDDEN
    with serving(runtime, RecordingService(), PATIENT) as handle:
        answer = raw_http(handle.port, request)
        assert statuses(answer) == [400], answer
        assert b"connection: close" in answer.lower()
        logged(caplog, "both Content-Length and Transfer-Encoding")
        assert healthz(handle.port) == 200  # other connections are unaffected


@pytest.mark.parametrize("version", [b"9.9", b"2.0"])
def test_unsupported_http_version_is_505_and_closed(
    runtime: str, version: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="diaproto.serve")
    request = b"GET /healthz HTTP/" + version + b"\r\nHost: x\r\n\r\n" + HIDDEN
    with serving(runtime, RecordingService(), PATIENT) as handle:
        answer = raw_http(handle.port, request)
        assert statuses(answer) == [505], answer
        logged(caplog, f"HTTP/{version.decode()} is not supported")
        assert healthz(handle.port) == 200


@pytest.mark.parametrize("size", [b"ffffffffffffffffffff", b"10000000000000000"])
def test_overflowing_chunk_size_is_400_at_once(
    runtime: str, size: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="diaproto.serve")
    request = b"POST /v1/stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    with serving(runtime, RecordingService(), PATIENT) as handle:
        answer = raw_http(handle.port, request + size + b"\r\nabc")
        assert statuses(answer) == [400], answer
        logged(caplog, "chunk size overflows 64 bits")
        assert healthz(handle.port) == 200
