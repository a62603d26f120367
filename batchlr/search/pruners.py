"""Pruners by name, set up for one report per epoch (the mean validation accuracy over folds)."""

from __future__ import annotations

import warnings
from collections.abc import Container
from typing import Literal, get_args

import optuna
from optuna.trial import FrozenTrial, TrialState

PrunerName = Literal["median", "asha", "hyperband", "wilcoxon", "none"]
PRUNER_NAMES: tuple[PrunerName, ...] = get_args(PrunerName)


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    """Build the pruner called ``name`` for trials of ``epochs`` reports.

    ``median`` may stop a trial after its first epoch once five trials have completed.
    ``asha`` is asynchronous successive halving (Li et al. 2020): after epochs 1, 2, 4, ...
    while at least half of ``epochs`` remain (see :class:`EpochsTrained`), a trial goes on only
    while among the better half of the trials of its optimizer that reached that epoch (see
    :class:`AmongItsOptimizer`). Halves rather than the customary thirds: a trial's first epoch
    ranks it least surely, and a third there let 8 of 10 seeds reach the target on digits,
    halves 10 of 10, at the same final best (see the README's Measured section).
    ``hyperband`` runs several such brackets, judged at the 0-based reports (its first rung
    after epoch 2).
    ``wilcoxon`` pairs this trial's per-epoch fold means with the best trial's at the same
    epochs and stops it when it is worse with p < 0.1.
    """
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if name == "asha":
        halving = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
        return EpochsTrained(AmongItsOptimizer(halving), epochs)
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


class EpochsTrained(optuna.pruners.BasePruner):
    """``pruner`` judging each report at the epochs trained (1 after the first) rather than at
    the 0-based round batchlr stores it at, and only while at least half of the ``epochs``
    remain.

    Successive halving's first rung, at step ``min_resource`` = 1, then falls after the first
    epoch, not the second. On digits that cut the training images to reach the target from
    0.40x to 0.30x plain TPE's (ridge sampler, 10 seeds; see the README's Measured section).
    A rung past half the budget saves too little to stake a good trial on one noisy epoch:
    at epoch 9 of 10, ASHA pruned 19 trials in 10 seeds on digits, several of them within a
    point of the best. As in ASHA proper, whose rungs end a factor below the budget, a trial
    past the last rung that decides trains to the end."""

    def __init__(self, pruner: optuna.pruners.BasePruner, epochs: int) -> None:
        self._pruner = pruner
        self._epochs = epochs

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        trained = max(trial.intermediate_values, default=-1) + 1
        if 2 * trained > self._epochs:
            return False
        counted = FrozenTrial(
            number=trial.number,
            state=trial.state,
            value=None,
            values=trial.values,
            datetime_start=trial.datetime_start,
            datetime_complete=trial.datetime_complete,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=trial.user_attrs,
            system_attrs=trial.system_attrs,
            intermediate_values={
                step + 1: value for step, value in trial.intermediate_values.items()
            },
            # FrozenTrial has no public id, and successive halving records its rungs by it.
            trial_id=trial._trial_id,
        )
        return self._pruner.prune(study, counted)


class AmongItsOptimizer(optuna.pruners.BasePruner):
    """``pruner`` judging a trial against the trials of its own optimizer only.

    Optimizers learn at different paces: after one epoch on digits, SGD's trials had a median
    accuracy of 0.23 and Adam's 0.55, yet SGD's best trials ended highest (0.983 to 0.987
    under plain TPE, Adam's 0.977 to 0.980). Judged together after the first epoch, ASHA let
    4 SGD trials of 69 complete in 10 seeds, and 9 of the 10 studies ended on Adam or RMSProp;
    judged apart, 28 of 95 completed and the final best rose from 0.9791 to 0.9823 (median)."""

    def __init__(self, pruner: optuna.pruners.BasePruner) -> None:
        self._pruner = pruner

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return self._pruner.prune(_OneOptimizer(study, trial.params.get("optimizer")), trial)


class _OneOptimizer(optuna.Study):
    """``study`` with only the trials of ``optimizer``, as a pruner reads it."""

    def __init__(self, study: optuna.Study, optimizer: object) -> None:
        super().__init__(study.study_name, study._storage, study.sampler, study.pruner)
        self._optimizer = optimizer

    def get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        return [
            trial
            for trial in super().get_trials(deepcopy=deepcopy, states=states)
            if trial.params.get("optimizer") == self._optimizer
        ]
