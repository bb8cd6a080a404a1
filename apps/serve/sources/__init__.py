"""Speech sources: blocking iterators of PCM s16le chunks, run on a worker thread.

:class:`Source` is what a generation runs (:mod:`.source`). :class:`SyntheticSource` makes
deterministic speech-like audio with no model (tests, demos, load runs), from the formant
voice of :mod:`.voice_synth`; the real Dia model streams through Hugging Face transformers
(:mod:`.dia`, loaded by :func:`load_source` only when asked for, since torch is an optional
install).
"""

from diaproto.apps.serve.sources.loading import load_source
from diaproto.apps.serve.sources.source import (
    Source,
    SourceUnavailable,
    check_voice_and_speed,
    framed,
)
from diaproto.apps.serve.sources.synthetic import SyntheticSource
from diaproto.apps.serve.sources.voice_synth import synthesize

__all__ = [
    "Source",
    "SourceUnavailable",
    "SyntheticSource",
    "check_voice_and_speed",
    "framed",
    "load_source",
    "synthesize",
]
