"""Micro-batching: the cap on samples per forward/backward pass, how a batch splits under it,
and finding the largest micro-batch that fits in device memory."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from batchlr.errors import BatchlrError

# torch loads in the functions that train: reading a study's settings needs none of it
if TYPE_CHECKING:
    import torch

    from batchlr.objectives.models import ModelFactory

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
    requested: int | str | None,
    stored: int | str | None,
    factory: ModelFactory,
    input_shape: tuple[int, int, int],
    num_classes: int,
    device: torch.device,
    upper: int,
) -> int | str | None:
    """The cap a run trains with: a number as given; for ``auto`` the study's ``stored`` cap, so
    that resumed runs and refits train as its trials did, else the one probed on ``device``.
    ``stored`` is as the study's attrs hold it, which allow ``auto`` too: that comes back as is."""
    if requested != AUTO:
        return None if requested is None else int(requested)
    if stored is not None:
        return stored
    return largest_micro_batch(factory, input_shape, num_classes, device, upper)


def largest_passing(passes: Callable[[int], bool], upper: int) -> int:
    """The largest n in 1..upper with ``passes(n)``, assuming it passes up to some size and fails above.

    Doubles from 1 until a size fails or ``upper`` is reached, then bisects between the
    last size that passed and the first that failed: O(log upper) calls.

    Raises:
        BatchlrError: when not even a batch of one passes.
    """
    low, high = 0, upper + 1  # high: the smallest size known to fail; upper + 1 until one does
    size = 1
    while size <= upper:
        if not passes(size):
            high = size
            break
        low = size
        if size == upper:
            return upper
        size = min(size * 2, upper)
    if low == 0:
        raise BatchlrError(
            "not even a micro-batch of 1 fits in device memory; use a smaller --model or another --device"
        )
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if passes(middle) else (low, middle)
    return low


def fits_in_memory(
    factory: ModelFactory, input_shape: tuple[int, int, int], num_classes: int, device: torch.device
) -> Callable[[int], bool]:
    """A test of whether a forward/backward pass and an Adam step of ``n`` samples fit on ``device``."""
    import torch
    import torch.nn.functional as F

    from batchlr.objectives.device import release_memory

    def passes(size: int) -> bool:
        model = optimizer = None
        try:
            model = factory(input_shape, num_classes).to(device)
            optimizer = torch.optim.Adam(model.parameters())  # Adam keeps the most optimizer state
            inputs = torch.randn(size, *input_shape, device=device)
            targets = torch.zeros(size, dtype=torch.long, device=device)
            F.cross_entropy(model(inputs), targets).backward()
            optimizer.step()
            torch.cuda.synchronize(device)
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            del model, optimizer
            release_memory(device)

    return passes


def largest_micro_batch(
    factory: ModelFactory,
    input_shape: tuple[int, int, int],
    num_classes: int,
    device: torch.device,
    upper: int,
) -> int:
    """The largest micro-batch of at most ``upper`` that trains on ``device``.

    Only CUDA is probed: on the CPU (and MPS, which shares system memory) running out of
    memory ends the process instead of raising, so the cap is ``upper`` there.
    """
    if device.type != "cuda":
        return upper
    return largest_passing(fits_in_memory(factory, input_shape, num_classes, device), upper)
