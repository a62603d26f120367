"""The ridge sampler on a synthetic objective whose best lr is known, and in a resumed study."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import optuna
import pytest

from batchlr.search.lr_scaling import LrScaling
from batchlr.search.ridge import Ridge
from batchlr.search.ridge_sampler import (
    PRIOR_ALPHA_SPREAD,
    PRIOR_REFERENCE_BATCH,
    PRIOR_RIDGES,
    STARTUP_TRIALS,
    RidgeSampler,
    _fitted,
    effective_lr,
)
from batchlr.search.space import OPTIMIZER_NAMES, Hyperparameters, SearchSpace
from batchlr.studies.store import StudySpec

RIDGE = (0.05, 1.0)
"""The synthetic data's best effective SGD lr at batch 64 and its exponent: a decade below the
prior ridge that the sampler starts from, and linear rather than square-root scaling."""


def _accuracy(hyperparameters: Hyperparameters, ridge: tuple[float, float] = RIDGE) -> float:
    """Peaks on ``ridge``, falling by 0.1 over the first decade either side of it."""
    distance = _distance(hyperparameters, ridge)
    return max(0.9 - 0.1 * distance**2, 0.1)


def _distance(hyperparameters: Hyperparameters, ridge: tuple[float, float] = RIDGE) -> float:
    """Decades from the best effective lr of ``ridge``."""
    lr_at_64, alpha = ridge
    best = lr_at_64 * (hyperparameters.batch_size / 64) ** alpha
    return math.log10(effective_lr(hyperparameters)) - math.log10(best)


def _distances(
    space: SearchSpace, sampler: optuna.samplers.BaseSampler, pruned: bool = False
) -> list[float]:
    """Decades from the best lr of each trial of a 60-trial study; with ``pruned``, every
    trial but each tenth is pruned after two of its ten epochs (ASHA pruned 25 of 30 on
    digits), so that too few complete for a fit of the complete trials alone."""

    def objective(trial: optuna.Trial) -> float:
        accuracy = _accuracy(space.suggest(trial))
        for epoch in range(10):
            trial.report(accuracy * (epoch + 1) / 10, epoch)
            if pruned and epoch == 1 and trial.number % 10:
                raise optuna.TrialPruned()
        return accuracy

    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=60)
    if pruned:  # a fit of the complete trials alone would never have steered
        assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) < STARTUP_TRIALS
    return [abs(_distance(_drawn(space, trial))) for trial in study.trials]


def _drawn(space: SearchSpace, trial: optuna.trial.FrozenTrial) -> Hyperparameters:
    """What the trial trained with, its lr after any scaling rule."""
    return Hyperparameters.from_params(trial.params, space)


@pytest.mark.parametrize(
    "scaling", [LrScaling(), LrScaling("sqrt", 64)], ids=["lr", "base_lr under sqrt scaling"]
)
def test_after_start_up_the_ridge_sampler_proposes_lrs_near_a_known_ridge(scaling):
    space = SearchSpace(
        batch_size=(16, 512), lr=(1e-5, 1.0), optimizers=("sgd",), lr_scaling=scaling
    )
    ridge = _distances(space, RidgeSampler(space, seed=0))
    tpe = _distances(space, optuna.samplers.TPESampler(seed=0))
    # With every lr left to TPE (no ridge), the median is 0.33 to 0.36; with it, 0.11 to 0.13.
    assert statistics.median(ridge[40:]) < 0.2
    after_start_up = STARTUP_TRIALS + 5
    assert statistics.median(ridge[after_start_up:]) < statistics.median(tpe[after_start_up:])


def _sampled(space: SearchSpace, sampler: optuna.samplers.BaseSampler) -> list[Hyperparameters]:
    """What each trial of a study shorter than the start-up drew."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    drawn: list[Hyperparameters] = []

    def objective(trial: optuna.Trial) -> float:
        drawn.append(space.suggest(trial))
        return 0.5

    study.optimize(objective, n_trials=STARTUP_TRIALS - 1)
    return drawn


def _prior_distance(hyperparameters: Hyperparameters) -> float:
    """Decades from the prior ridge of the trial's optimizer."""
    lr, alpha = PRIOR_RIDGES[hyperparameters.optimizer]
    prior = lr * (hyperparameters.batch_size / PRIOR_REFERENCE_BATCH) ** alpha
    return abs(math.log10(effective_lr(hyperparameters) / prior))


def test_every_optimizer_has_a_prior_ridge():
    assert sorted(PRIOR_RIDGES) == sorted(OPTIMIZER_NAMES)


@pytest.mark.parametrize(
    "scaling", [LrScaling(), LrScaling("linear", 16)], ids=["lr", "base_lr under linear scaling"]
)
def test_before_start_up_the_ridge_sampler_draws_lrs_around_the_prior_ridge(scaling):
    space = SearchSpace(
        batch_size=(16, 512), optimizers=("sgd", "adam", "rmsprop"), lr_scaling=scaling
    )
    ridge: list[float] = []
    tpe: list[float] = []
    for seed in range(3):
        ridge += map(_prior_distance, _sampled(space, RidgeSampler(space, seed=seed)))
        tpe += map(_prior_distance, _sampled(space, optuna.samplers.TPESampler(seed=seed)))
    assert statistics.median(ridge) < 0.45 < 0.6 < statistics.median(tpe)


def test_the_fit_that_steers_keeps_every_trial_that_beat_guessing_by_a_margin():
    """Trials on a ridge 2.7 decades below the prior, the weakest third of those that learned
    below the midpoint of the worst and best score: only a fit told the accuracy of guessing
    keeps three batch sizes and steers."""
    ridge = (1e-3, 1.0)  # effective lr at batch 64, exponent
    history = [  # batch size, lr at the ridge's multiple, accuracy (ten classes: chance 0.1)
        *[(16, 1.0, 0.40), (16, 3.0, 0.38), (64, 1.0, 0.35), (64, 3.0, 0.33)],
        *[(256, 1.0, 0.22), (256, 3.0, 0.21)],
        *[(batch, 1000.0, 0.1) for batch in (16, 32, 64, 128, 256, 512)],
    ]
    space = SearchSpace(batch_size=(16, 512), lr=(1e-6, 10.0), optimizers=("sgd",))

    def distances(chance: float | None) -> list[float]:
        study = optuna.create_study(
            direction="maximize", sampler=RidgeSampler(space, seed=0, chance=chance)
        )
        for batch_size, multiple, accuracy in history:
            lr = ridge[0] * (batch_size / 64) ** ridge[1] * multiple
            params = {"optimizer": "sgd", "batch_size": batch_size, "momentum": 0.0, "lr": lr}
            study.enqueue_trial(params)
            trial = study.ask()
            space.suggest(trial)
            study.tell(trial, accuracy)
        asked = [space.suggest(study.ask()) for _ in range(30)]
        return [abs(_distance(drawn, ridge)) for drawn in asked]

    assert statistics.median(distances(0.1)) < 0.5 < 1.5 < statistics.median(distances(None))


def test_a_range_far_from_the_ridge_is_left_to_tpe_not_pinned_to_its_end():
    space = SearchSpace(batch_size=(16, 512), lr=(1e-9, 1e-8), optimizers=("adam",))
    lrs = [drawn.lr for drawn in _sampled(space, RidgeSampler(space, seed=0))]
    assert len(set(lrs)) == len(lrs) and min(lrs) < 3e-9


def _ridge(alpha_interval: tuple[float, float]) -> Ridge:
    """A fitted SGD ridge of exponent 1, 0.1 at batch 64, with ``alpha_interval``."""
    return Ridge("sgd", 64, 0.1, 1.0, alpha_interval, 12, (16, 256), 4)


def test_a_fitted_exponent_is_shrunk_towards_the_prior_as_far_as_it_is_uncertain():
    prior_alpha = PRIOR_RIDGES["sgd"][1]
    # At batch 640, a decade above the reference, the centre rises by the exponent used.
    tight, _ = _fitted(_ridge((0.98, 1.02)), 640)
    unknown, unknown_spread = _fitted(_ridge((math.nan, math.nan)), 640)
    loose, _ = _fitted(_ridge((0.0, 2.0)), 640)
    assert tight + 1 == pytest.approx(1.0, abs=0.01)
    assert unknown + 1 == pytest.approx(prior_alpha)
    assert unknown_spread == pytest.approx(PRIOR_ALPHA_SPREAD)
    assert prior_alpha < loose + 1 < 1.0
    assert _fitted(_ridge((0.98, 1.02)), 64) == (pytest.approx(-1.0), pytest.approx(0.15))


def test_the_ridge_sampler_fits_the_early_epochs_of_pruned_trials():
    space = SearchSpace(batch_size=(16, 512), lr=(1e-5, 1.0), optimizers=("sgd",))
    distances = _distances(space, RidgeSampler(space, seed=0), pruned=True)
    # A prior ridge alone would leave them a decade off.
    assert statistics.median(distances[40:]) < 0.4


def test_a_ridge_study_resumes_with_the_ridge_sampler(tmp_path: Path):
    from click.testing import CliRunner

    from batchlr.cli import main
    from batchlr.studies.run import RunOptions, open_study

    storage = f"sqlite:///{tmp_path / 'ridge.db'}"
    args = ["run", "--storage", storage, "--study", "r", "--folds", "2", "--epochs", "1"]
    result = CliRunner().invoke(
        main, [*args, "--sampler", "ridge", "--n-trials", "2", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    # whatever this run's defaults would choose, as a later release's might
    requested = StudySpec(sampler="tpe")
    opened = open_study(storage, "r", requested, set(), RunOptions(device="cpu"))
    assert isinstance(opened.study.sampler, RidgeSampler)
    # its fit told the accuracy of guessing digits' ten classes, as show's is
    assert opened.study.sampler._chance == pytest.approx(0.1)
