"""``/v1/audio/speech``: OpenAI's speech API, streamed.

The body is OpenAI's (``model``, ``input``, ``voice``, ``response_format``, ``speed``,
``stream_format``): the audio comes as the response body, encoded in ``response_format``
(mp3 by default, as OpenAI's) as it is made, or as OpenAI's ``speech.audio.delta`` events
with ``stream_format: "sse"``.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

from diaproto.apps.serve.encoding import SpeechEncoder
from diaproto.apps.serve.event_stream import SSE_STREAM_ID
from diaproto.apps.serve.listeners import SpeechBodyListener, SpeechSseListener
from diaproto.apps.serve.requests import BadRequest, StreamRequest, parse_speech_request
from diaproto.events import Request
from diaproto.runtime import Session

if TYPE_CHECKING:
    from diaproto.apps.serve.app import DiaService


log = logging.getLogger("diaproto.serve")


class SpeechApi:
    """Answers each ``POST /v1/audio/speech`` with its generation's audio."""

    def __init__(self, service: DiaService) -> None:
        self.service = service

    def handle(self, session: Session, request: Request) -> None:
        service = self.service
        try:
            speech = parse_speech_request(request.body)
        except BadRequest as exc:
            service.responder.error(session, "speech", 400, str(exc), param=exc.field)
            return
        try:  # before the model's place is taken: nothing to give back if it fails
            encoder = SpeechEncoder(speech.response_format, speech.sample_rate)
        except Exception as exc:  # an FFmpeg build without this encoder
            log.exception("speech: no %s encoder", speech.response_format)
            message = f"{speech.response_format} cannot be encoded here ({exc})"
            service.responder.error(session, "speech", 500, message, code="internal")
            return
        if service.peer_at_limit(session, "speech"):
            encoder.close()
            return
        admitted, admission = service.admit_or_503(session, "speech")
        if not admitted:
            encoder.close()
            return
        conn, now = session.conn, session.runtime.now()
        parsed = StreamRequest(speech.input, speech.voice, speech.speed)
        cors = service.cors_headers(session)
        listener: SpeechBodyListener | SpeechSseListener
        if speech.stream_format == "sse":
            conn.accept_sse(headers=cors, now=now)
            listener = SpeechSseListener(
                session, SSE_STREAM_ID, input_chars=len(speech.input), encoder=encoder
            )
        else:
            headers = (("content-type", encoder.media_type), ("cache-control", "no-store"))
            conn.start_response(200, (*headers, *cors), now=now)
            listener = SpeechBodyListener(session, SSE_STREAM_ID, encoder=encoder)
        service.metrics.requests.labels("speech", "200").inc()
        token = secrets.token_urlsafe(12)
        generation = service.start_generation(session, token, parsed, admission)
        service.attach(session, generation, listener, after=None, credit=None)
