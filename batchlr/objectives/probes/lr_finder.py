"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks")."""

from __future__ import annotations

import bisect
import dataclasses
import math

import numpy as np
import torch

from batchlr.objectives.trainer import Regime, Trainer
from batchlr.search.space import Hyperparameters

SMOOTHING = 0.98
DIVERGENCE_FACTOR = 4.0
MIN_POINTS = 3
"""Learning rates a sweep must keep before the loss diverges for its suggestion to mean anything."""

# The default sweep: six decades in 300 steps. With smoothing over about 50 steps, a sweep of
# eight decades in 100 (fastai's) lags the loss by four decades: on digits the loss of SGD with
# momentum 0.9 fell 1 % before it diverged, and two seeds of Adam on the CIFAR subset suggested
# lrs 7.7x apart. This sweep's losses fell 10 % to 28 % (SGD) and 70 % to 80 % (Adam, RMSProp)
# on digits, and 10 % (Adam) on the CIFAR subset.
START_LR = 1e-5
END_LR = 10.0
LR_COUNT = 300


@dataclasses.dataclass(frozen=True)
class LrRangeTest:
    """The swept learning rates, the smoothed loss at each, the suggested learning rate, and
    the regime the sweep trained in."""

    lrs: list[float]
    losses: list[float]
    suggested_lr: float
    stopped_early: bool
    regime: Regime

    @property
    def loss_drop(self) -> float:
        """How far the smoothed loss fell below its first value, as a fraction of it; near 0 the
        curve has no real descent and the suggestion is noise."""
        return 1 - min(self.losses) / self.losses[0] if self.losses and self.losses[0] > 0 else 0.0

    @property
    def diverged_at_once(self) -> bool:
        """True when fewer than :data:`MIN_POINTS` learning rates trained before the loss diverged."""
        return len(self.lrs) < MIN_POINTS


def lr_range_test(
    trainer: Trainer,
    indices: torch.Tensor,
    hyperparameters: Hyperparameters,
    seed: int,
    start_lr: float = START_LR,
    end_lr: float = END_LR,
    steps: int = LR_COUNT,
) -> LrRangeTest:
    """Train one fresh model on ``indices`` with the trainer's step, the learning rate growing
    exponentially from ``start_lr`` to ``end_lr`` over ``steps`` (``hyperparameters.lr`` is
    ignored).

    The loss is smoothed with a bias-corrected exponential average; the sweep stops once
    the smoothed loss exceeds four times its minimum or turns non-finite. The suggestion is
    the smoothed curve's :func:`valley`. Reads the loss every step (one device sync per step)
    to stop in time.
    """
    growth = (end_lr / start_lr) ** (1 / max(1, steps - 1))
    group = trainer.fold_group(
        dataclasses.replace(hyperparameters, lr=start_lr),
        [(indices, indices[:0])],
        seed,
        lr_multiplier=lambda step: growth**step,
    )
    lrs: list[float] = []
    losses: list[float] = []
    average, lowest, stopped_early = 0.0, math.inf, False
    for step in range(steps):
        lr = group.optimizer.param_groups[0]["lr"]
        loss = trainer.train_steps(group, 1)[0].item()
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        smoothed = average / (1 - SMOOTHING ** (step + 1))
        if not math.isfinite(smoothed) or smoothed > DIVERGENCE_FACTOR * lowest:
            stopped_early = True
            break
        lowest = min(lowest, smoothed)
        lrs.append(lr)
        losses.append(smoothed)
    suggested = valley(lrs, losses) if lrs else math.nan
    regime = trainer.regime(hyperparameters.batch_size)
    return LrRangeTest(lrs, losses, suggested, stopped_early, regime)


SPREAD_LIMIT = 3.0
"""How far apart (as a ratio) two seeds' suggestions may lie before the test is called unsteady."""

SEARCH_RANGE = (1 / 30, 3.0)
"""The lr range to search, as multiples of the suggestion: from about 1.5 decades below it to
half a decade above. On digits (6 seeds of 6 trials under ``--lr auto``) it left 6 of 36
trials at chance, 1 of them complete, and a decade either side 8; with the older sweep and
suggestion, 7 and 10. The best accuracy was the same within seeds' noise (median 0.977)."""


@dataclasses.dataclass(frozen=True)
class SeededLrRangeTests:
    """The range test run once per seed (model initialisation and batch order): one seed's
    suggestion can be off by a decade, so the suggestion is the geometric mean of theirs and
    ``spread`` says how far they lie apart."""

    seeds: tuple[int, ...]
    tests: tuple[LrRangeTest, ...]

    @property
    def first(self) -> LrRangeTest:
        """The first seed's test, whose curve is printed and drawn."""
        return self.tests[0]

    @property
    def suggested_lr(self) -> float:
        return math.exp(sum(math.log(test.suggested_lr) for test in self.tests) / len(self.tests))

    @property
    def spread(self) -> float:
        """The largest suggestion over the smallest: 1.0 when the seeds agree."""
        suggestions = [test.suggested_lr for test in self.tests]
        return max(suggestions) / min(suggestions)

    @property
    def unsteady(self) -> bool:
        """True when the seeds' suggestions lie more than :data:`SPREAD_LIMIT` apart."""
        return self.spread > SPREAD_LIMIT

    @property
    def loss_drop(self) -> float:
        """The weakest descent of the seeds' curves (see :attr:`LrRangeTest.loss_drop`)."""
        return min(test.loss_drop for test in self.tests)

    @property
    def diverged_at_once(self) -> bool:
        return any(test.diverged_at_once for test in self.tests)


def seeded_lr_range_tests(
    trainer: Trainer,
    indices: torch.Tensor,
    hyperparameters: Hyperparameters,
    seeds: tuple[int, ...],
    start_lr: float = START_LR,
    end_lr: float = END_LR,
    steps: int = LR_COUNT,
) -> SeededLrRangeTests:
    """:func:`lr_range_test` once per seed, each from a fresh model; stops after the first
    seed whose loss diverged at once, since no suggestion comes of it."""
    tests: list[LrRangeTest] = []
    for seed in seeds:
        torch.manual_seed(seed)
        tests.append(
            lr_range_test(trainer, indices, hyperparameters, seed, start_lr, end_lr, steps)
        )
        if tests[-1].diverged_at_once:
            break
    return SeededLrRangeTests(seeds[: len(tests)], tuple(tests))


def valley(lrs: list[float], losses: list[float]) -> float:
    """The learning rate two thirds of the way down the longest descent of ``losses``, found as
    fastai's "valley" finds it (which takes half way): the longest subsequence of points, in
    sweep order, each lower than the one before (noisy points between them skipped), taken as
    the stretch of as many points that ends where it ends.

    The fastest fall, the older rule, lands on the first steps whenever their loss is noisy
    (1e-5, the sweep's start, for 2 of 8 seeds of Adam and 3 of 8 of SGD on the CIFAR
    subset). This rule's suggestions over those eight seeds lay at most 1.4x (Adam) and 2.6x
    (SGD) apart there, 1.7x to 3.6x on digits, and near the lrs that trained best: Adam 0.0024
    on the CIFAR subset, where issue 22's grids found 0.002 to 0.003.
    """
    # The longest strictly falling subsequence ending at each point, by patience sorting.
    tails: list[float] = []
    lengths: list[int] = []
    for loss in losses:
        position = bisect.bisect_left(tails, -loss)
        tails[position : position + 1] = [-loss]
        lengths.append(position + 1)
    end = int(np.argmax(lengths))
    start = end - lengths[end] + 1
    return lrs[start + (end - start) * 2 // 3]
