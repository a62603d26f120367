"""The ridge sampler on a synthetic objective whose best lr is known, and in a resumed study."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import optuna
import pytest

from batchlr.search.lr_scaling import LrScaling
from batchlr.search.ridge_sampler import (
    PRIOR_REFERENCE_BATCH,
    PRIOR_RIDGES,
    STARTUP_TRIALS,
    RidgeSampler,
)
from batchlr.search.space import Hyperparameters, SearchSpace


def _accuracy(lr: float, batch_size: int) -> float:
    """Peaks at lr*(B) = 1e-4 B: linear scaling, the SGD textbook ridge."""
    distance = math.log10(lr) - math.log10(1e-4 * batch_size)
    return max(0.9 - 0.1 * distance**2, 0.1)


def _distances(space: SearchSpace, sampler: optuna.samplers.BaseSampler) -> list[float]:
    """Decades from the best lr of each trial after start-up, of a 60-trial study."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(
        lambda trial: _accuracy(space.suggest(trial).lr, trial.params["batch_size"]),
        n_trials=60,
    )
    late = [trial for trial in study.trials if trial.number >= STARTUP_TRIALS + 5]
    return [
        abs(math.log10(_lr(space, trial) / (1e-4 * trial.params["batch_size"]))) for trial in late
    ]


def _lr(space: SearchSpace, trial: optuna.trial.FrozenTrial) -> float:
    """The lr the trial trained with, after any scaling rule."""
    return Hyperparameters.from_params(trial.params, space).lr


@pytest.mark.parametrize(
    "scaling", [LrScaling(), LrScaling("sqrt", 64)], ids=["lr", "base_lr under sqrt scaling"]
)
def test_after_start_up_the_ridge_sampler_proposes_lrs_near_a_known_ridge(scaling):
    space = SearchSpace(
        batch_size=(16, 512), lr=(1e-5, 1.0), optimizers=("sgd",), lr_scaling=scaling
    )
    ridge = _distances(space, RidgeSampler(space, seed=0))
    tpe = _distances(space, optuna.samplers.TPESampler(seed=0))
    assert statistics.median(ridge) < 0.3
    assert statistics.median(ridge) < statistics.median(tpe)


def _prior_distances(space: SearchSpace, sampler: optuna.samplers.BaseSampler) -> list[float]:
    """Decades from the prior ridge of each trial of a study shorter than the start-up."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda trial: space.suggest(trial).lr and 0.5, n_trials=STARTUP_TRIALS - 1)
    distances = []
    for trial in study.trials:
        lr, alpha = PRIOR_RIDGES[trial.params["optimizer"]]
        prior = lr * (trial.params["batch_size"] / PRIOR_REFERENCE_BATCH) ** alpha
        distances.append(abs(math.log10(_lr(space, trial) / prior)))
    return distances


def test_before_start_up_the_ridge_sampler_draws_lrs_around_the_prior_ridge():
    space = SearchSpace(batch_size=(16, 512), optimizers=("sgd", "adam"))
    ridge, tpe = [], []
    for seed in range(3):
        ridge += _prior_distances(space, RidgeSampler(space, seed=seed))
        tpe += _prior_distances(space, optuna.samplers.TPESampler(seed=seed))
    assert statistics.median(ridge) < 0.45 < 0.6 < statistics.median(tpe)


def test_the_ridge_sampler_fits_the_early_epochs_of_pruned_trials():
    space = SearchSpace(batch_size=(16, 512), lr=(1e-5, 1.0), optimizers=("sgd",))

    def objective(trial: optuna.Trial) -> float:
        accuracy = _accuracy(space.suggest(trial).lr, trial.params["batch_size"])
        for epoch in range(10):
            trial.report(accuracy * (epoch + 1) / 10, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return accuracy

    study = optuna.create_study(
        direction="maximize",
        sampler=RidgeSampler(space, seed=0),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
    )
    study.optimize(objective, n_trials=30)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    late = study.trials[STARTUP_TRIALS + 5 :]
    distances = [
        abs(math.log10(_lr(space, trial) / (1e-4 * trial.params["batch_size"]))) for trial in late
    ]
    assert len(complete) < STARTUP_TRIALS  # a fit of complete trials alone would never steer
    assert statistics.median(distances) < 0.3


def test_a_ridge_study_resumes_with_the_ridge_sampler(tmp_path: Path):
    from click.testing import CliRunner

    from batchlr.cli import main
    from batchlr.studies.run import RunOptions, open_study
    from batchlr.studies.store import StudySpec

    storage = f"sqlite:///{tmp_path / 'ridge.db'}"
    args = ["run", "--storage", storage, "--study", "r", "--folds", "2", "--epochs", "1"]
    result = CliRunner().invoke(
        main, [*args, "--sampler", "ridge", "--n-trials", "2", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    opened = open_study(storage, "r", StudySpec(), set(), RunOptions(device="cpu"))
    assert isinstance(opened.study.sampler, RidgeSampler)
