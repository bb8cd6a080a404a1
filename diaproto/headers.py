"""Small helpers for HTTP headers (names lower-case, values as text) and error bodies."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from diaproto.events import Headers

_REASONS = {
    400: "Bad Request",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    505: "HTTP Version Not Supported",
}


def decode_headers(raw: Iterable[tuple[bytes, bytes]]) -> Headers:
    """h11's header pairs as text. Values are latin-1, the only lossless reading."""
    return tuple((name.decode("ascii"), value.decode("latin-1")) for name, value in raw)


def encode_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("ascii"), value.encode("latin-1")) for name, value in headers]


def header_values(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    """Every value of a header, in order (names are compared case-insensitively)."""
    wanted = name.lower()
    return [value for key, value in headers if key.lower() == wanted]


def header_tokens(headers: Sequence[tuple[str, str]], name: str) -> set[str]:
    """The comma-separated tokens of a header, lower-cased (``Connection``, ``Upgrade``)."""
    return {
        token.strip().lower()
        for value in header_values(headers, name)
        for token in value.split(",")
        if token.strip()
    }


def error_response_body(status: int, message: str) -> bytes:
    reason = _REASONS.get(status, "Error")
    return f"{status} {reason}: {message}\n".encode()
