"""Multi-round-trip requests (SEP-2322, 2026-07-28): a result that asks the client first.

Without sessions a server cannot send the client a request mid-call. Instead a request
(``tools/call``, ``prompts/get``...) is answered with an *input-required* result naming
what the server needs (``inputRequests``: elicitation, sampling, roots) and, optionally,
an opaque ``requestState``; the client retries the same request with ``inputResponses``
(keyed as the requests were) and that state. Everything the server keeps between rounds
travels through the client, so it must be signed: :class:`StateSigner`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from diaproto.mcp.protocol import CAPABILITY_OF_CLIENT_METHOD

INPUT_REQUIRED = "input_required"
INPUT_RESPONSES = "inputResponses"
REQUEST_STATE = "requestState"


def input_request(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """One entry of ``inputRequests``: a request the client runs on the server's behalf."""
    return {"method": method, "params": params or {}}


def input_required(
    requests: dict[str, dict[str, Any]], request_state: str | None = None
) -> dict[str, Any]:
    """The result that asks the client for ``requests`` before the request can finish."""
    result: dict[str, Any] = {"resultType": INPUT_REQUIRED, "inputRequests": requests}
    if request_state is not None:
        result["requestState"] = request_state
    return result


def retry_problem(params: dict[str, Any]) -> str | None:
    """What is malformed in a retry's ``inputResponses`` / ``requestState``, or None.

    Each response is the client's result for one input request: an object (an elicitation
    or sampling result, a roots list); anything else is a protocol error, never data."""
    if INPUT_RESPONSES in params:
        responses = params[INPUT_RESPONSES]
        if not isinstance(responses, dict):
            return f"{INPUT_RESPONSES} must be an object"
        bad = sorted(key for key, value in responses.items() if not isinstance(value, dict))
        if bad:
            return f"{INPUT_RESPONSES} entries must be result objects: {', '.join(bad)}"
    if REQUEST_STATE in params and not isinstance(params[REQUEST_STATE], str):
        return f"{REQUEST_STATE} must be a string"
    return None


def client_can(method: str, capabilities: dict[str, Any]) -> bool:
    """May a server ask a client with ``capabilities`` to run ``method``?"""
    needed = CAPABILITY_OF_CLIENT_METHOD.get(method)
    return needed is not None and needed in capabilities


@dataclass(frozen=True)
class StateSigner:
    """Seals ``requestState`` with HMAC-SHA256, so a client can carry it but not forge it."""

    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def sign(self, payload: dict[str, Any]) -> str:
        data = json.dumps(payload, separators=(",", ":"), sort_keys=True)
        return json.dumps({"data": data, "mac": self._mac(data)}, separators=(",", ":"))

    def verify(self, state: object) -> dict[str, Any] | None:
        """The payload ``sign`` sealed; None for anything altered, forged or malformed."""
        if not isinstance(state, str):
            return None
        try:
            sealed = json.loads(state)
            data, mac = sealed["data"], sealed["mac"]
            if not isinstance(data, str) or not isinstance(mac, str):
                return None
            if not hmac.compare_digest(mac, self._mac(data)):
                return None
            payload = json.loads(data)
        except (ValueError, TypeError, KeyError):
            return None
        return payload if isinstance(payload, dict) else None

    def _mac(self, data: str) -> str:
        return hmac.new(self.key, data.encode(), hashlib.sha256).hexdigest()
