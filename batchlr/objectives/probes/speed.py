"""How fast the trials' step trains at a batch size on this device: a few timed optimizer steps
of one model, after steps that warm the device up (cuDNN's autotuning, the allocator, caches)."""

from __future__ import annotations

import statistics
import time

import torch

from batchlr.objectives.trainer import Trainer
from batchlr.search.space import Hyperparameters

WARMUP_STEPS = 3
TIMED_BLOCKS = 3
"""The timed steps run in this many blocks, and the median block's speed counts: a moment of
another process's load on the machine moves one block, not the measurement."""


def images_per_second(
    trainer: Trainer, indices: torch.Tensor, hyperparameters: Hyperparameters, seed: int, steps: int
) -> float | None:
    """Training images per second of one fresh model on ``indices`` at ``hyperparameters``
    (micro-batched as the trainer's cap says): the median speed of :data:`TIMED_BLOCKS` blocks
    of about ``steps`` timed steps in all; None when the batch does not fit in the device's
    memory even so."""
    group = trainer.fold_group(
        hyperparameters, [(indices, indices[:0])], seed, lr_multiplier=lambda step: 1.0
    )
    block = max(1, round(steps / TIMED_BLOCKS))
    speeds = []
    try:
        trainer.train_steps(group, WARMUP_STEPS)[0].tolist()  # tolist(): wait for the device
        for _ in range(TIMED_BLOCKS):
            started = time.perf_counter()
            trainer.train_steps(group, block)[0].tolist()
            speeds.append(block * hyperparameters.batch_size / (time.perf_counter() - started))
    except torch.OutOfMemoryError:
        return None
    return statistics.median(speeds)
