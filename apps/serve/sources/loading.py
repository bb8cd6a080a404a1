"""A source by its name (``diaproto serve --model``): ``synthetic``, ``dia`` (with the install
hint when Dia's packages are missing), or ``module:attr``, any :class:`Source` of your own."""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any

from diaproto.apps.serve.sources.source import Source, SourceUnavailable
from diaproto.apps.serve.sources.synthetic import SyntheticSource

DIA_INSTALL_HINT = (
    "the Dia source needs PyTorch and Hugging Face transformers: "
    "pip install 'diaproto[dia]' (with the torch build for your GPU, e.g. from PyTorch's "
    "CUDA index). A CUDA GPU is needed for real time: on a CPU Dia runs tens of times "
    "slower than real time. The weights (~6 GB) come from the Hugging Face Hub on first use."
)


BUILT_IN = ("synthetic", "dia")
# ``package.module:attribute`` (the attribute may be dotted), as uvicorn names an app.
_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
SOURCE_MEMBERS = ("name", "model_queue", "generate")


def valid_model_name(name: str) -> bool:
    """``synthetic``, ``dia`` or a ``module:attr`` spec (not yet imported)."""
    return name in BUILT_IN or _SPEC.fullmatch(name) is not None


def load_source(name: str, **options: Any) -> Source:
    """The source called ``name``, built with ``options``: "synthetic", "dia", or
    ``module:attr`` naming a :class:`Source`, or a class or factory that makes one when
    called with no arguments."""
    if _SPEC.fullmatch(name):
        return _load_spec(name)
    if name == "synthetic":
        return SyntheticSource(**options)
    if name == "dia":
        try:
            from .dia.model import load_transformers_dia  # noqa: PLC0415 (torch is optional)
        except ImportError as exc:
            raise SourceUnavailable(f"{DIA_INSTALL_HINT} ({exc})") from exc
        return load_transformers_dia(**options)
    raise ValueError(
        f"unknown source {name!r}: valid sources are dia, synthetic or module:attr "
        "(a Source of your own)"
    )


def _load_spec(spec: str) -> Source:
    module_name, _, path = spec.partition(":")
    # As uvicorn does for an app: a module in the directory the command runs from is found
    # although a console script's sys.path starts with the script's own directory.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: Any = importlib.import_module(module_name)
    except Exception as exc:  # not found, or failing as it loads: one line either way
        raise SourceUnavailable(f"--model {spec}: cannot import {module_name} ({exc!r})") from exc
    for part in path.split("."):
        if not hasattr(found, part):
            raise SourceUnavailable(f"--model {spec}: {module_name} has no {path!r}")
        found = getattr(found, part)
    if isinstance(found, type) or (callable(found) and not hasattr(found, "generate")):
        try:
            found = found()  # a class or a factory: the source is what it makes
        except Exception as exc:
            raise SourceUnavailable(f"--model {spec}: making the source failed ({exc})") from exc
    missing = [member for member in SOURCE_MEMBERS if not hasattr(found, member)]
    if missing or not callable(found.generate):
        lacking = ", ".join(missing or ["a callable generate"])
        raise SourceUnavailable(
            f"--model {spec} is not a Source (it lacks {lacking}): a source has a name, a "
            "model_queue (None for none) and generate(text, voice, speed, *, stop, admission) "
            "yielding PCM s16le 44.1 kHz mono chunks"
        )
    source: Source = found
    return source
