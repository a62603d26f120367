"""Samplers by name."""

from __future__ import annotations

import optuna

from batchlr.search.space import SearchSpace

SAMPLER_NAMES: tuple[str, ...] = ("tpe", "gp", "random", "grid")


def make_sampler(name: str, space: SearchSpace, seed: int | None) -> optuna.samplers.BaseSampler:
    """Build the sampler called ``name``.

    ``grid`` walks :meth:`SearchSpace.grid` (powers of two for batch size, decades for the
    learning rate) and the study stops by itself once every point has run.
    """
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLER_NAMES)}")
