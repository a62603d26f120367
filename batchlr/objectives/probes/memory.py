"""The largest micro-batch that fits in device memory, found by taking the trials' own step."""

from __future__ import annotations

from collections.abc import Callable

import torch

from batchlr.errors import BatchlrError
from batchlr.objectives.trainer import Trainer
from batchlr.objectives.training.device import release_memory
from batchlr.search.space import Hyperparameters


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


def fits_in_memory(trainer: Trainer, size: int) -> bool:
    """Whether one step of Adam (which keeps the most optimizer state) on ``size`` samples of
    one fold fits on the trainer's device, in its precision and augmentation."""
    device = trainer.device
    group = None
    try:
        batch = torch.zeros(1, size, dtype=torch.long, device=device)
        group = trainer.fold_group(
            Hyperparameters(size, 1e-3, "adam"), [(batch[0], batch[0, :0])], 0
        )
        group.models.train()
        trainer.step(group, batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # CUDA reports running out only once it runs
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        del group
        release_memory(device)


def largest_micro_batch(trainer: Trainer, upper: int) -> int:
    """The largest micro-batch of at most ``upper`` that trains on the trainer's device.

    Only CUDA is probed: on the CPU (and MPS, which shares system memory) running out of
    memory ends the process instead of raising, so the cap is ``upper`` there.
    """
    if trainer.device.type != "cuda":
        return upper
    separate = trainer.with_cap(None).with_folds("off", compile=False)
    return largest_passing(lambda size: fits_in_memory(separate, size), upper)
