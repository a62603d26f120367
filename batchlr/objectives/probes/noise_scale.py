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
from torch import nn

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Sample = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""Positions in the population to (inputs, targets), so that inputs are made one batch at a time."""


@dataclasses.dataclass(frozen=True)
class NoiseScale:
    """The estimate and its parts."""

    noise_scale: float
    gradient_norm_squared: float
    covariance_trace: float
    small_batch: int
    big_batch: int
    repeats: int

    @property
    def critical_batch_size(self) -> int:
        """B_simple as a batch size."""
        return max(1, round(self.noise_scale))

    @property
    def suggested_batch_range(self) -> tuple[int, int]:
        """Half to twice the critical batch size: B_simple predicts the critical batch size only roughly."""
        return max(1, self.critical_batch_size // 2), 2 * self.critical_batch_size


def squared_gradient_norm(
    model: nn.Module, loss_function: LossFunction, inputs: torch.Tensor, targets: torch.Tensor
) -> float:
    """|∇L|² of the mean loss over one batch."""
    model.zero_grad(set_to_none=True)
    loss_function(model(inputs), targets).backward()
    return float(
        sum(
            parameter.grad.pow(2).sum()
            for parameter in model.parameters()
            if parameter.grad is not None
        )
    )


def estimate_noise_scale(
    model: nn.Module,
    loss_function: LossFunction,
    sample: Sample,
    population: int,
    small_batch: int,
    big_batch: int,
    repeats: int,
    generator: torch.Generator,
) -> NoiseScale:
    """Estimate B_simple of ``model`` on ``population`` examples, read through ``sample``,
    without changing its weights.

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
        big = squared_gradient_norm(model, loss_function, *sample(drawn))
        small = statistics.fmean(
            squared_gradient_norm(model, loss_function, *sample(part))
            for part in drawn[: big_batch // small_batch * small_batch].split(small_batch)
        )
        norms.append((big_batch * big - small_batch * small) / (big_batch - small_batch))
        traces.append((small - big) / (1 / small_batch - 1 / big_batch))
    model.zero_grad(set_to_none=True)
    norm, trace = statistics.fmean(norms), statistics.fmean(traces)
    # The estimates are unbiased, not positive: too few repeats can leave |G|^2 at or below zero.
    return NoiseScale(
        trace / norm if norm > 0 else math.nan, norm, trace, small_batch, big_batch, repeats
    )
