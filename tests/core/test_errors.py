"""One exception root, and close codes as names."""

from __future__ import annotations

import inspect

import diaproto
import diaproto.errors
import diaproto.mcp.eventstore
import diaproto.mcp.jsonrpc
import diaproto.wire
from diaproto import CloseCode, DiaprotoError


def test_every_exception_of_the_core_has_one_root() -> None:
    modules = (diaproto.errors, diaproto.wire, diaproto.mcp.jsonrpc, diaproto.mcp.eventstore)
    exceptions = [
        cls
        for module in modules
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == module.__name__
    ]
    assert len(exceptions) >= 6  # ProtocolError, Local/Remote, ReplayGap, WireError, ...
    assert all(issubclass(cls, DiaprotoError) for cls in exceptions), exceptions


def test_close_codes_are_the_rfc_numbers() -> None:
    assert CloseCode.NORMAL_CLOSURE.value == 1000
    assert CloseCode.GOING_AWAY.value == 1001
    assert CloseCode.POLICY_VIOLATION.value == 1008
    assert CloseCode.INTERNAL_ERROR.value == 1011
    assert CloseCode(1009) is CloseCode.MESSAGE_TOO_BIG
