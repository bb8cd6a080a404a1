"""A source by its name (``diaproto serve --model``), with the install hint when Dia's
packages are missing."""

from __future__ import annotations

from typing import Any

from diaproto.apps.serve.sources.source import Source, SourceUnavailable
from diaproto.apps.serve.sources.synthetic import SyntheticSource

DIA_INSTALL_HINT = (
    "the Dia source needs PyTorch and Hugging Face transformers: "
    "pip install 'diaproto[dia]' (with the torch build for your GPU, e.g. from PyTorch's "
    "CUDA index). A CUDA GPU is needed for real time: on a CPU Dia runs tens of times "
    "slower than real time. The weights (~6 GB) come from the Hugging Face Hub on first use."
)


def load_source(name: str, **options: Any) -> Source:
    """The source called ``name`` ("synthetic" or "dia"), built with ``options``."""
    if name == "synthetic":
        return SyntheticSource(**options)
    if name == "dia":
        try:
            from .dia.model import load_transformers_dia  # noqa: PLC0415 (torch is optional)
        except ImportError as exc:
            raise SourceUnavailable(f"{DIA_INSTALL_HINT} ({exc})") from exc
        return load_transformers_dia(**options)
    raise ValueError(f"unknown source {name!r}: valid sources are dia, synthetic")
