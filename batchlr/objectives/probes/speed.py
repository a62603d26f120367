"""How fast the trials' step trains at a batch size on this device: a few timed optimizer steps
of one model, after steps that warm the device up (cuDNN's autotuning, the allocator, caches)."""

from __future__ import annotations

import time

import torch

from batchlr.objectives.trainer import Trainer
from batchlr.search.space import Hyperparameters

WARMUP_STEPS = 3


def images_per_second(
    trainer: Trainer, indices: torch.Tensor, hyperparameters: Hyperparameters, seed: int, steps: int
) -> float | None:
    """Training images per second of one fresh model on ``indices`` at ``hyperparameters``
    (micro-batched as the trainer's cap says), over ``steps`` timed steps; None when the batch
    does not fit in the device's memory even so."""
    group = trainer.fold_group(
        hyperparameters, [(indices, indices[:0])], seed, lr_multiplier=lambda step: 1.0
    )
    try:
        trainer.train_steps(group, WARMUP_STEPS)[0].tolist()  # tolist(): wait for the device
        started = time.perf_counter()
        trainer.train_steps(group, steps)[0].tolist()
    except torch.OutOfMemoryError:
        return None
    return steps * hyperparameters.batch_size / (time.perf_counter() - started)
