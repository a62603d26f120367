"""Samplers by name."""

from __future__ import annotations

import optuna

from batchlr.search.space import SearchSpace, grid_point_counts

SAMPLER_NAMES: tuple[str, ...] = ("tpe", "gp", "random", "grid")


def make_sampler(name: str, space: SearchSpace, seed: int | None, grid_points: str | None = None) -> optuna.samplers.BaseSampler:
    """Build the sampler called ``name``.

    ``grid`` walks :meth:`SearchSpace.grid` (powers of two for batch size, decades for the
    learning rate, or ``grid_points`` log-spaced values of those it names) and the study stops
    by itself once every point has run. Other samplers ignore ``grid_points``.
    """
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler(space.grid(grid_point_counts(grid_points)), seed=seed)
    raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLER_NAMES)}")
