"""The simple gradient noise scale B_simple = tr(Σ) / |G|² (McCandlish et al. 2018, appendix A).

|G|² is the squared norm of the true gradient and tr(Σ) the trace of the per-example
gradient covariance. A batch of B examples gives E|G_B|² = |G|² + tr(Σ)/B, so the mean
squared gradient norms at two batch sizes b < B yield unbiased estimates of both:

    |G|²  ≈ (B·|G_B|² − b·|G_b|²) / (B − b)
    tr(Σ) ≈ (|G_b|² − |G_B|²) / (1/b − 1/B)

Each is averaged over repeats before their ratio is taken, as the paper recommends.
B_simple estimates the critical batch size: below it, larger batches cut the steps needed
almost proportionally; above it, they mostly cost more compute.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable

import torch

from batchlr.objectives.trainer import Regime, Trainer
from batchlr.search.space import Hyperparameters

SquaredNorm = Callable[[torch.Tensor], float]
"""Positions drawn from the population to |∇L|² of the mean loss over those examples."""


@dataclasses.dataclass(frozen=True)
class NoiseScale:
    """The estimate, its parts, and the regime of the big batch's gradients."""

    noise_scale: float
    gradient_norm_squared: float
    covariance_trace: float
    small_batch: int
    big_batch: int
    repeats: int
    regime: Regime

    @property
    def critical_batch_size(self) -> int:
        """B_simple as a batch size."""
        return max(1, round(self.noise_scale))

    @property
    def suggested_batch_range(self) -> tuple[int, int]:
        """Half to twice the critical batch size: B_simple predicts the critical batch size only roughly."""
        return max(1, self.critical_batch_size // 2), 2 * self.critical_batch_size

    @property
    def usable(self) -> bool:
        """False when too few repeats left |G|² at or below zero: the gradient is buried in noise."""
        return (
            math.isfinite(self.noise_scale)
            and self.noise_scale > 0
            and self.gradient_norm_squared > 0
        )


def estimate_noise_scale(
    squared_norm: SquaredNorm,
    population: int,
    small_batch: int,
    big_batch: int,
    repeats: int,
    generator: torch.Generator,
    regime: Regime,
) -> NoiseScale:
    """Estimate B_simple on ``population`` examples from ``squared_norm`` of batches of them.

    Each repeat draws ``big_batch`` examples with replacement (the estimator assumes
    independent draws), takes |G_B|² on all of them and |G_b|² on each run of
    ``small_batch`` inside them.
    """
    if not 0 < small_batch < big_batch:
        raise ValueError(f"need 0 < small batch < big batch, got {small_batch} and {big_batch}")
    norms, traces = [], []
    for _ in range(repeats):
        drawn = torch.randint(
            population, (big_batch,), generator=generator, device=generator.device
        )
        big = squared_norm(drawn)
        small = statistics.fmean(
            squared_norm(part)
            for part in drawn[: big_batch // small_batch * small_batch].split(small_batch)
        )
        norms.append((big_batch * big - small_batch * small) / (big_batch - small_batch))
        traces.append((small - big) / (1 / small_batch - 1 / big_batch))
    norm, trace = statistics.fmean(norms), statistics.fmean(traces)
    # The estimates are unbiased, not positive: too few repeats can leave |G|^2 at or below zero.
    return NoiseScale(
        trace / norm if norm > 0 else math.nan,
        norm,
        trace,
        small_batch,
        big_batch,
        repeats,
        regime,
    )


def trained_noise_scale(
    trainer: Trainer,
    indices: torch.Tensor,
    hyperparameters: Hyperparameters,
    seed: int,
    epochs: int,
    small_batch: int,
    big_batch: int,
    repeats: int,
) -> NoiseScale:
    """B_simple of a fresh model on ``indices``, at initialisation or after ``epochs`` epochs
    at ``hyperparameters`` (a constant lr), its gradients those of the trainer's step without
    the update: augmented, label-smoothed, in the precision and micro-batches the trials use.
    The model's weights do not change while it is measured."""
    group = trainer.fold_group(
        hyperparameters, [(indices, indices[:0])], seed, lr_multiplier=lambda step: 1.0
    )
    if epochs:
        trainer.train_steps(group, epochs * group.batches[0].epoch_steps)
    group.models.train()

    def squared_norm(drawn: torch.Tensor) -> float:
        trainer.step(group, indices[drawn][None], update=False)
        gradients = [parameter.grad for parameter in group.models.parameters()]
        total = sum(gradient.pow(2).sum() for gradient in gradients if gradient is not None)
        return float(total) / group.scaler.get_scale() ** 2

    return estimate_noise_scale(
        squared_norm,
        len(indices),
        small_batch,
        big_batch,
        repeats,
        group.batches[0].generator,
        trainer.regime(big_batch),
    )
