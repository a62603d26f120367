"""Micro-batching: the cap on samples per forward/backward pass and how a batch splits under it.

Finding the largest micro-batch that fits in device memory, which trains, is in
:mod:`batchlr.objectives.probes.memory`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

# torch loads in the functions that train: reading a study's settings needs none of it
if TYPE_CHECKING:
    import torch


EVAL_CHUNK = 256
"""Samples per validation pass when no cap is set: the activations of a larger pass cost
more memory than the whole data set's uint8 pixels for small data sets, and gain little."""

AUTO = "auto"
"""The cap a study asks to be found by probing the device (``--max-micro-batch auto``)."""


@dataclasses.dataclass(frozen=True)
class MicroBatching:
    """Passes of at most ``cap`` samples (``None``: no cap); a larger batch accumulates gradients.

    A batch splits into ceil(batch / cap) near-equal micro-batches, never a remainder of one,
    which BatchNorm cannot train on. A cap means memory is tight, so validation runs in passes
    no larger than it.
    """

    cap: int | None = None

    def size(self, batch_size: int) -> int:
        """Samples in the largest micro-batch of a batch of ``batch_size``."""
        return math.ceil(batch_size / self.accumulation_steps(batch_size))

    def accumulation_steps(self, batch_size: int) -> int:
        """Forward/backward passes per optimizer step."""
        return math.ceil(batch_size / self.cap) if self.cap else 1

    def split(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``batch`` (indices; one row per fold) as the micro-batches one optimizer step accumulates."""
        return batch.tensor_split(self.accumulation_steps(batch.shape[-1]), dim=-1)

    @property
    def eval_chunk(self) -> int:
        """Samples per validation pass."""
        return self.cap or EVAL_CHUNK


UNCAPPED = MicroBatching()
"""No cap: every batch in one forward/backward pass."""


def resolve_cap(
    requested: int | str | None, stored: int | str | None, probe: Callable[[], int]
) -> int | None:
    """The cap a run trains with: a number as given, or none; for :data:`AUTO` the study's
    ``stored`` cap, so that resumed runs and refits train as its trials did, else what
    ``probe`` finds on this device. A stored :data:`AUTO` (never resolved) is probed too."""
    if requested != AUTO:
        return None if requested is None else int(requested)
    if stored is not None and stored != AUTO:
        return int(stored)
    return probe()
