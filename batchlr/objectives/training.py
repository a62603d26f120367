"""The training loop: k folds advanced in lockstep, one epoch at a time, on in-memory tensors.

Batches are index slices of tensors already on the device, and the loop reads nothing
back from the device until an epoch ends.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

EVAL_CHUNK = 1024


@dataclasses.dataclass
class FoldRun:
    """One fold's model and optimizer, with its training and validation indices on the device."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    train_indices: torch.Tensor
    val_indices: torch.Tensor


@dataclasses.dataclass(frozen=True)
class EpochResult:
    """What every fold did in one epoch; lists hold one value per fold."""

    epoch: int
    val_accuracy: list[float]
    train_accuracy: list[float]
    train_loss: list[float]
    train_seconds: float
    train_images: int

    @property
    def diverged(self) -> bool:
        """True when some fold's loss became NaN or infinite."""
        return not all(math.isfinite(loss) for loss in self.train_loss)


def train_epoch(
    run: FoldRun, images: torch.Tensor, labels: torch.Tensor, batch_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over a fold's training indices in a fresh order; returns (mean loss, accuracy) on the device.

    The last incomplete batch is dropped so that every optimizer step sees exactly ``batch_size``
    samples (and BatchNorm never sees a batch of one); the next shuffle covers what it skipped.
    """
    run.model.train()
    order = run.train_indices[torch.randperm(len(run.train_indices), generator=generator, device=images.device)]
    steps = len(order) // batch_size
    loss_sum = torch.zeros((), device=images.device)
    correct = torch.zeros((), device=images.device, dtype=torch.long)
    for step in range(steps):
        batch = order[step * batch_size : (step + 1) * batch_size]
        inputs, targets = images[batch], labels[batch]
        logits = run.model(inputs)
        loss = F.cross_entropy(logits, targets)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        loss_sum += loss.detach()
        correct += (logits.detach().argmax(dim=1) == targets).sum()
    return loss_sum / steps, correct / (steps * batch_size)


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Accuracy on ``indices``, as a tensor on the device."""
    model.eval()
    correct = torch.zeros((), device=images.device, dtype=torch.long)
    for start in range(0, len(indices), EVAL_CHUNK):
        chunk = indices[start : start + EVAL_CHUNK]
        correct += (model(images[chunk]).argmax(dim=1) == labels[chunk]).sum()
    return correct / len(indices)


def train_in_lockstep(
    runs: list[FoldRun],
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    epochs: int,
    generator: torch.Generator,
) -> Iterator[EpochResult]:
    """Train every fold for ``epochs`` epochs, yielding after each epoch of all folds.

    Epoch e of every fold finishes before epoch e+1 of any fold starts, so the caller can
    report a fold mean after each epoch and stop the whole trial early.
    """
    for epoch in range(epochs):
        started = time.perf_counter()
        train_stats = [train_epoch(run, images, labels, batch_size, generator) for run in runs]
        train_loss, train_accuracy = torch.stack([torch.stack(pair) for pair in train_stats]).T.tolist()
        train_seconds = time.perf_counter() - started  # tolist() waited for the device
        val_accuracy = torch.stack([evaluate(run.model, images, labels, run.val_indices) for run in runs]).tolist()
        yield EpochResult(
            epoch=epoch,
            val_accuracy=val_accuracy,
            train_accuracy=train_accuracy,
            train_loss=train_loss,
            train_seconds=train_seconds,
            train_images=sum(len(run.train_indices) // batch_size * batch_size for run in runs),
        )
