"""Finding the largest micro-batch that fits in device memory, and the cap a run trains with
(:mod:`batchlr.objectives.micro_batches` says what a cap does, without torch)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from batchlr.errors import BatchlrError
from batchlr.objectives.micro_batches import AUTO
from batchlr.objectives.training.device import release_memory

if TYPE_CHECKING:
    from batchlr.objectives.models.catalog import ModelFactory


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
