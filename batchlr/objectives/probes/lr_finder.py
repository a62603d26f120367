"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks")."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from batchlr.objectives.training.batches import DeviceImages
from batchlr.objectives.training.loop import BatchStream

SMOOTHING = 0.98
DIVERGENCE_FACTOR = 4.0


@dataclasses.dataclass(frozen=True)
class LrRangeTest:
    """The swept learning rates, the smoothed loss at each, and the suggested learning rate."""

    lrs: list[float]
    losses: list[float]
    suggested_lr: float
    stopped_early: bool

    @property
    def loss_drop(self) -> float:
        """How far the smoothed loss fell below its first value, as a fraction of it; near 0 the
        curve has no real descent and the suggestion is noise."""
        return 1 - min(self.losses) / self.losses[0] if self.losses and self.losses[0] > 0 else 0.0


def lr_range_test(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: BatchStream,
    data: DeviceImages,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 100,
) -> LrRangeTest:
    """Train with a learning rate growing exponentially from ``start_lr`` to ``end_lr`` over ``steps``.

    The loss is smoothed with a bias-corrected exponential average; the sweep stops once
    the smoothed loss exceeds four times its minimum or turns non-finite. The suggestion is
    the learning rate where the smoothed loss falls fastest against log(lr), before its
    minimum. Reads the loss every step (one device sync per step) to stop in time.
    """
    model.train()
    lrs: list[float] = []
    losses: list[float] = []
    average, lowest, stopped_early = 0.0, math.inf, False
    for step in range(steps):
        lr = start_lr * (end_lr / start_lr) ** (step / max(1, steps - 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = batches.next()
        loss = F.cross_entropy(model(data.inputs(batch)), data.labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        average = SMOOTHING * average + (1 - SMOOTHING) * loss.item()
        smoothed = average / (1 - SMOOTHING ** (step + 1))
        if not math.isfinite(smoothed) or smoothed > DIVERGENCE_FACTOR * lowest:
            stopped_early = True
            break
        lowest = min(lowest, smoothed)
        lrs.append(lr)
        losses.append(smoothed)
    suggested = steepest_descent(lrs, losses) if lrs else math.nan
    return LrRangeTest(lrs, losses, suggested, stopped_early)


def steepest_descent(lrs: list[float], losses: list[float]) -> float:
    """The learning rate where ``losses`` falls fastest against log10(lr), up to the minimum loss.

    With fewer than three points before the minimum, a tenth of the learning rate at the
    minimum, the usual rule of thumb.
    """
    lowest = int(np.argmin(losses))
    if lowest < 2:
        return lrs[lowest] / 10
    slopes = np.gradient(np.asarray(losses[: lowest + 1]), np.log10(lrs[: lowest + 1]))
    return float(lrs[int(np.argmin(slopes))])
