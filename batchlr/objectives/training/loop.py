"""The training loop: k folds advanced in lockstep, one round of optimizer steps at a time.

Batches are index slices of tensors already on the device, and the loop reads nothing
back from the device until a round ends. A round is an epoch under an epoch budget, and about a
tenth of the steps under a step budget.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from batchlr.objectives.micro_batches import EVAL_CHUNK, UNCAPPED, MicroBatching
from batchlr.objectives.training.batches import DeviceImages
from batchlr.objectives.training.execution import Execution
from batchlr.objectives.training.fold_models import FoldModels

# Under fp16 the gradient scaler skips the steps whose gradients overflowed, and torch then warns
# that the schedule stepped without the optimizer: that skip is the scaler's purpose.
warnings.filterwarnings(
    "ignore", message=r"Detected call of `lr_scheduler.step\(\)` before `optimizer.step\(\)`"
)


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
    validation indices, the optimizer steps of each round, and how the device computes."""

    models: FoldModels
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    batches: list[BatchStream]
    val_indices: list[torch.Tensor]
    rounds: list[int]
    execution: Execution
    label_smoothing: float = 0.0
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


def train_steps(
    group: FoldGroup, data: DeviceImages, steps: int, micro_batching: MicroBatching
) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` optimizer steps of every fold on augmented batches; returns each fold's mean
    loss and accuracy over them, as two tensors of k values on the device.

    Each batch is split by ``micro_batching`` and the gradients accumulated: each
    micro-batch's summed loss is divided by the whole batch, so the step uses the mean
    gradient of exactly the batch (BatchNorm still normalises per micro-batch).
    """
    group.models.train()
    count, device = group.models.count, data.labels.device
    loss_sum = torch.zeros(count, device=device)
    correct = torch.zeros(count, device=device, dtype=torch.long)
    generators = [stream.generator for stream in group.batches]
    for _ in range(steps):
        batch = torch.stack([stream.next() for stream in group.batches])
        group.optimizer.zero_grad(set_to_none=True)
        for micro in micro_batching.split(batch):
            labels, inputs = data.labels[micro], data.training_inputs(micro, generators)
            for folds in group.models.passes:
                with group.execution.autocast():
                    logits = group.models.logits(inputs[folds], folds)
                    losses = F.cross_entropy(
                        logits.flatten(0, 1),
                        labels[folds].flatten(),
                        reduction="none",
                        label_smoothing=group.label_smoothing,
                    )
                fold_losses = losses.view(len(logits), -1).sum(dim=1)
                group.scaler.scale(fold_losses.sum() / batch.shape[1]).backward()
                loss_sum[folds] += fold_losses.detach()
                correct[folds] += (logits.detach().argmax(dim=2) == labels[folds]).sum(dim=1)
        group.scaler.step(group.optimizer)
        group.scaler.update()
        group.scheduler.step()
    samples = max(1, steps * group.batch_size)
    return loss_sum / samples, correct / samples


@torch.no_grad()
def evaluate(
    models: FoldModels,
    data: DeviceImages,
    indices: list[torch.Tensor],
    chunk_size: int = EVAL_CHUNK,
    execution: Execution | None = None,
) -> torch.Tensor:
    """Each fold's accuracy on its ``indices`` (never augmented), as k values on the device, in
    passes of at most ``chunk_size`` images per fold.

    The folds' index lists may differ in length: the shorter ones are padded with index 0, which
    is not counted.
    """
    models.train(False)
    execution = execution or Execution(data.labels.device)
    device = data.labels.device
    lengths = torch.tensor([len(part) for part in indices], device=device)
    longest = max(len(part) for part in indices)
    padded = (
        torch.stack([F.pad(part, (0, longest - len(part))) for part in indices])
        if longest
        else None
    )
    correct = torch.zeros(len(indices), device=device, dtype=torch.long)
    for start in range(0, longest, chunk_size):
        assert padded is not None  # stacked whenever longest > 0, as it is in this loop
        chunk = padded[:, start : start + chunk_size]
        counted = torch.arange(start, start + chunk.shape[1], device=device) < lengths[:, None]
        inputs, labels = data.inputs(chunk), data.labels[chunk]
        for folds in models.passes:
            with execution.autocast():
                logits = models.logits(inputs[folds], folds)
            correct[folds] += ((logits.argmax(dim=2) == labels[folds]) & counted[folds]).sum(dim=1)
    return correct / lengths.clamp_min(1)


def train_in_lockstep(
    group: FoldGroup, data: DeviceImages, micro_batching: MicroBatching = UNCAPPED
) -> Iterator[RoundResult]:
    """Train every fold round by round, yielding after each round of all folds.

    ``micro_batching`` caps the samples per fold in a training and validation pass.

    Round r of every fold finishes before round r+1 of any fold starts, so the caller can
    report a fold mean after each round and stop the whole trial early. Nothing is read back
    from the device within a round.
    """
    for round_index, steps in enumerate(group.rounds):
        started = time.perf_counter()
        train_loss, train_accuracy = torch.stack(
            train_steps(group, data, steps, micro_batching)
        ).tolist()
        train_seconds = time.perf_counter() - started  # tolist() waited for the device
        val_accuracy = evaluate(
            group.models, data, group.val_indices, micro_batching.eval_chunk, group.execution
        ).tolist()
        yield RoundResult(
            round=round_index,
            val_accuracy=val_accuracy,
            train_accuracy=train_accuracy,
            train_loss=train_loss,
            train_seconds=train_seconds,
            train_images=steps * group.batch_size * group.models.count,
        )
