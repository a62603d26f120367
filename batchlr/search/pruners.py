"""Pruners by name, set up for one report per epoch (the mean validation accuracy over folds)."""

from __future__ import annotations

import warnings
from typing import Literal, get_args

import optuna

PrunerName = Literal["median", "asha", "hyperband", "wilcoxon", "none"]
PRUNER_NAMES: tuple[PrunerName, ...] = get_args(PrunerName)


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    """Build the pruner called ``name`` for trials of ``epochs`` reports.

    ``median`` may stop a trial after its first epoch once five trials have completed.
    ``asha`` is asynchronous successive halving (Li et al. 2020): after epochs 2, 4 and 10
    (rungs 1, 3, 9 of the 0-based reports), a trial goes on only while among the best third
    of the trials that reached that epoch; ``hyperband`` runs several such brackets.
    ``wilcoxon`` pairs this trial's per-epoch fold means with the best trial's at the same
    epochs and stops it when it is worse with p < 0.1.
    """
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=epochs, reduction_factor=3
        )
    if name == "wilcoxon":
        with warnings.catch_warnings():
            # Experimental in Optuna since 3.6; asking for it by name is the user's informed choice.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=2)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}; choose from {', '.join(PRUNER_NAMES)}")
