"""What k folds train with: their models, optimizer, schedule, batches and rounds.

Batches are index slices of tensors already on the device. A round is an epoch under an epoch
budget, and about a tenth of the steps under a step budget. The
:class:`~batchlr.objectives.trainer.Trainer` takes the steps.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from batchlr.objectives.micro_batches import UNCAPPED, MicroBatching
from batchlr.objectives.training.execution import Execution
from batchlr.objectives.training.fold_models import FoldModels


class BatchStream:
    """Batches of indices from a fresh shuffle every epoch of ``epoch_steps`` batches; the rest
    of a shuffle is dropped, so every optimizer step sees exactly ``batch_size`` samples and
    BatchNorm never a batch of one.

    ``epoch_steps`` defaults to the whole batches in ``indices``; the folds of a trial pass the
    smallest fold's, so that all of them step in lockstep, fused or not.
    """

    def __init__(
        self,
        indices: torch.Tensor,
        batch_size: int,
        generator: torch.Generator,
        epoch_steps: int | None = None,
    ) -> None:
        self.indices, self.batch_size, self.generator = indices, batch_size, generator
        self.epoch_steps = epoch_steps or len(indices) // batch_size
        self.order = indices[:0]
        self.step = 0

    def next(self) -> torch.Tensor:
        position = self.step % self.epoch_steps * self.batch_size
        if position == 0:
            self.order = self.indices[
                torch.randperm(
                    len(self.indices), generator=self.generator, device=self.indices.device
                )
            ]
        self.step += 1
        return self.order[position : position + self.batch_size]


@dataclasses.dataclass
class FoldGroup:
    """The k folds of a trial: their models, one optimizer and schedule for all of them, each
    fold's batches (with its own random generator, which also draws its augmentation) and
    validation indices, the optimizer steps of each round, how the device computes, the
    training loss's label smoothing, and how a batch splits into micro-batches."""

    models: FoldModels
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    batches: list[BatchStream]
    val_indices: list[torch.Tensor]
    rounds: list[int]
    execution: Execution
    label_smoothing: float = 0.0
    micro_batching: MicroBatching = UNCAPPED
    scaler: torch.amp.GradScaler = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.scaler = self.execution.scaler()

    @property
    def batch_size(self) -> int:
        return self.batches[0].batch_size


@dataclasses.dataclass(frozen=True)
class RoundResult:
    """What every fold did in one round; lists hold one value per fold."""

    round: int
    val_accuracy: list[float]
    train_accuracy: list[float]
    train_loss: list[float]
    train_seconds: float
    train_images: int

    @property
    def diverged(self) -> bool:
        """True when some fold's loss became NaN or infinite."""
        return not all(math.isfinite(loss) for loss in self.train_loss)
