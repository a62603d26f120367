"""Samplers by name."""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

import optuna

from batchlr.errors import BatchlrUsageError
from batchlr.search.grid import grid_point_counts
from batchlr.search.ridge_sampler import RidgeSampler
from batchlr.search.space import SearchSpace

SamplerName = Literal["tpe", "ridge", "gp", "random", "grid"]
SAMPLER_NAMES: tuple[SamplerName, ...] = get_args(SamplerName)
MAX_GRID_SIZE = 100_000
"""The most points a grid study may have: each is a trial of k-fold training, and GridSampler
holds every combination in memory (``--grid-points`` of 1000 for three params is 10^9)."""


def bounded_grid(space: SearchSpace, grid_points: str | None) -> dict[str, list[Any]]:
    """:meth:`SearchSpace.grid` for ``grid_points``, once its size is known to be at most
    :data:`MAX_GRID_SIZE`; a run checks it before the study is created.

    Raises:
        BatchlrUsageError: for a larger grid, naming each param's count.
    """
    grid = space.grid(grid_point_counts(grid_points))
    size = math.prod(len(values) for values in grid.values())
    if size > MAX_GRID_SIZE:
        counts = " x ".join(
            f"{len(values)} {name}" for name, values in grid.items() if len(values) > 1
        )
        raise BatchlrUsageError(
            f"--sampler grid: {counts} is {size:,} points, more than {MAX_GRID_SIZE:,}; give smaller --grid-points"
        )
    return grid


def make_sampler(
    name: str,
    space: SearchSpace,
    seed: int | None,
    grid_points: str | None = None,
    chance: float | None = None,
) -> optuna.samplers.BaseSampler:
    """Build the sampler called ``name``.

    ``ridge`` is TPE that draws learning rates along the lr ridge, a prior one and then the
    study's fit of its trials above ``chance`` (see
    :class:`~batchlr.search.ridge_sampler.RidgeSampler`). ``grid`` walks :func:`bounded_grid`
    (powers of two for batch size, decades for the learning rate, or ``grid_points`` log-spaced
    values of those it names) and the study stops by itself once every point has run. Other
    samplers ignore ``grid_points`` and ``chance``.
    """
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "ridge":
        return RidgeSampler(space, seed, chance)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler(bounded_grid(space, grid_points), seed=seed)
    raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLER_NAMES)}")
