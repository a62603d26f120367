"""The training loop: k folds advanced in lockstep, one round of optimizer steps at a time.

Batches are index slices of tensors already on the device, and the loop reads nothing
back from the device until a round ends. A round is an epoch under an epoch budget, and about a
tenth of the steps under a step budget.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from batchlr.objectives.batches import DeviceImages
from batchlr.objectives.micro_batches import EVAL_CHUNK, MicroBatching


class BatchStream:
    """Batches of indices from a fresh shuffle every epoch; an epoch's incomplete last batch is
    dropped, so every optimizer step sees exactly ``batch_size`` samples and BatchNorm never a
    batch of one."""

    def __init__(self, indices: torch.Tensor, batch_size: int, generator: torch.Generator) -> None:
        self.indices, self.batch_size, self.generator = indices, batch_size, generator
        self.order = indices[:0]
        self.position = 0

    def next(self) -> torch.Tensor:
        if self.position + self.batch_size > len(self.order):
            self.order = self.indices[torch.randperm(len(self.indices), generator=self.generator, device=self.indices.device)]
            self.position = 0
        self.position += self.batch_size
        return self.order[self.position - self.batch_size : self.position]


@dataclasses.dataclass
class FoldRun:
    """One fold's model, optimizer, schedule and loss, with its batches and validation indices on the device."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    batches: BatchStream
    val_indices: torch.Tensor
    rounds: list[int]
    label_smoothing: float = 0.0


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


def train_steps(run: FoldRun, data: DeviceImages, steps: int, micro_batching: MicroBatching) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` optimizer steps on augmented batches; returns (mean loss, accuracy) over them, on the device.

    Each batch is split by ``micro_batching`` and the gradients accumulated: each
    micro-batch's summed loss is divided by the whole batch, so the step uses the mean
    gradient of exactly the batch (BatchNorm still normalises per micro-batch).
    """
    run.model.train()
    device = data.labels.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for _ in range(steps):
        batch = run.batches.next()
        run.optimizer.zero_grad(set_to_none=True)
        for micro in micro_batching.split(batch):
            labels = data.labels[micro]
            logits = run.model(data.training_inputs(micro, run.batches.generator))
            loss = F.cross_entropy(logits, labels, reduction="sum", label_smoothing=run.label_smoothing)
            (loss / len(batch)).backward()
            loss_sum += loss.detach()
            correct += (logits.detach().argmax(dim=1) == labels).sum()
        run.optimizer.step()
        run.scheduler.step()
    samples = max(1, steps * run.batches.batch_size)
    return loss_sum / samples, correct / samples


@torch.no_grad()
def evaluate(model: nn.Module, data: DeviceImages, indices: torch.Tensor, chunk_size: int = EVAL_CHUNK) -> torch.Tensor:
    """Accuracy on ``indices`` (never augmented), as a tensor on the device, in forward passes of at most ``chunk_size``."""
    model.eval()
    correct = torch.zeros((), device=data.labels.device, dtype=torch.long)
    for start in range(0, len(indices), chunk_size):
        chunk = indices[start : start + chunk_size]
        correct += (model(data.inputs(chunk)).argmax(dim=1) == data.labels[chunk]).sum()
    return correct / len(indices)


def train_in_lockstep(runs: list[FoldRun], data: DeviceImages, micro_batching: MicroBatching = MicroBatching()) -> Iterator[RoundResult]:
    """Train every fold round by round, yielding after each round of all folds.

    ``micro_batching`` caps the samples per training and validation pass.

    Round r of every fold finishes before round r+1 of any fold starts, so the caller can
    report a fold mean after each round and stop the whole trial early.
    """
    for round_index in range(len(runs[0].rounds)):
        started = time.perf_counter()
        stats = [train_steps(run, data, run.rounds[round_index], micro_batching) for run in runs]
        train_loss, train_accuracy = torch.stack([torch.stack(pair) for pair in stats]).T.tolist()
        train_seconds = time.perf_counter() - started  # tolist() waited for the device
        val_accuracy = torch.stack(
            [evaluate(run.model, data, run.val_indices, micro_batching.eval_chunk) for run in runs]
        ).tolist()
        yield RoundResult(
            round=round_index,
            val_accuracy=val_accuracy,
            train_accuracy=train_accuracy,
            train_loss=train_loss,
            train_seconds=train_seconds,
            train_images=sum(run.rounds[round_index] * run.batches.batch_size for run in runs),
        )
