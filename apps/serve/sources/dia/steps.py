"""Dia's generation steps, out of ``generate()`` on the worker thread, and the way to stop it.

:class:`StepStreamer` puts each step's row of codebook tokens (row 0 of the batch) on a queue
the consumer reads, then :data:`END_OF_STEPS`; an exception the model raised is put there
too. :class:`CancelOnEvent` ends the run within one step once the request goes away.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import torch
from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

log = logging.getLogger("diaproto.serve.dia")


class EndOfSteps:
    """The end of a generation's steps (the worker's last word)."""


END_OF_STEPS = EndOfSteps()


class StepStreamer(BaseStreamer):
    """generate() -> a queue: one row of codebook tokens per step (row 0 of the batch)."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.rows: queue.Queue[list[int] | BaseException | EndOfSteps] = queue.Queue()
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # the first put is the decoder prompt, not a step
            self._prompt_seen = True
            return
        self.rows.put(value.reshape(-1, self.channels)[0].tolist())

    def end(self) -> None:
        self.rows.put(END_OF_STEPS)


class CancelOnEvent(StoppingCriteria):
    """Stops every row at the end of the current step once any of ``events`` is set."""

    def __init__(self, *events: threading.Event) -> None:
        self.events = events

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> Any:
        cancelled = any(event.is_set() for event in self.events)
        return torch.full(
            (input_ids.shape[0],), cancelled, dtype=torch.bool, device=input_ids.device
        )


def log_unread_errors(steps: StepStreamer) -> None:
    """An error the model raised after the consumer had stopped reading is still logged."""
    while not steps.rows.empty():
        item = steps.rows.get_nowait()
        if isinstance(item, BaseException):
            log.error("Dia generation failed after its reader stopped", exc_info=item)
