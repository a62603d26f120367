"""The ridge of the best lr over batch size, and the band of near-optimal trials, on synthetic studies."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from batchlr.errors import BatchlrError
from batchlr.objectives.trial_record import TrialRecord
from batchlr.search.ridge import Ridge, fit_ridges
from batchlr.studies.results import Band, near_optimal_band, scored_trials

BATCH_SIZES = [16, 32, 64, 128, 256, 512]


def _fit(trials, chance=None):
    """The ridges of a study's ``trials``, read as ``batchlr show`` reads them."""
    return fit_ridges(scored_trials(trials, None), chance)


LRS = [float(lr) for lr in np.logspace(-4, 0, 8)]


def _trial(
    number: int, optimizer: str, batch_size: int, lr: float, folds: list[float]
) -> optuna.trial.FrozenTrial:
    """A complete trial that trained with ``lr`` and scored ``folds``; its value their mean."""
    distributions = {
        "optimizer": optuna.distributions.CategoricalDistribution(["sgd", "adam"]),
        "batch_size": optuna.distributions.IntDistribution(16, 1024, log=True),
        "lr": optuna.distributions.FloatDistribution(1e-5, 10.0, log=True),
    }
    trial = optuna.trial.create_trial(
        value=float(np.nanmean(folds)),
        params={"optimizer": optimizer, "batch_size": batch_size, "lr": lr},
        distributions=distributions,
        user_attrs=TrialRecord(lr=lr, fold_scores=folds).to_attrs(),
    )
    trial.number = number
    return trial


def _grid(optimizer, best_lr, noise=0.005, seed=0, batch_sizes=BATCH_SIZES, lrs=LRS):
    """A trial per batch size and lr whose accuracy peaks at ``best_lr(B)``, over three folds."""
    rng = np.random.default_rng(seed)
    trials = []
    for batch_size in batch_sizes:
        for lr in lrs:
            distance = math.log10(lr) - math.log10(best_lr(batch_size))
            mean = max(0.9 - 0.1 * distance**2, 0.1)  # chance, for ten classes
            folds = [float(mean + rng.normal(0, noise)) for _ in range(3)]
            trials.append(_trial(len(trials), optimizer, batch_size, lr, folds))
    return trials


@pytest.mark.parametrize(("optimizer", "alpha"), [("adam", 0.5), ("sgd", 1.0)])
def test_the_fit_recovers_the_exponent_of_the_best_lr(optimizer, alpha):
    trials = _grid(optimizer, lambda batch: 1e-4 * batch**alpha)
    fits = _fit(trials, chance=0.1)
    ridge = fits[optimizer].ridge
    assert ridge is not None, fits[optimizer].reason
    assert abs(ridge.alpha - alpha) < 0.15
    assert ridge.alpha_interval[0] <= alpha <= ridge.alpha_interval[1]
    assert ridge.surge_peak is None and ridge.batch_sizes == 6
    assert ridge.trials == sum(trial.value > 0.19 for trial in trials)
    assert ridge.batch_range == (16, 512) and ridge.reference_batch == 64  # geometric mean 90.5
    assert ridge.lr(64) == pytest.approx(1e-4 * 64**alpha, rel=0.3)
    assert ridge.describe().startswith(f"{optimizer}: lr* = ")


def test_the_interval_widens_as_the_best_lrs_scatter_about_the_line():
    def interval(scatter: float) -> float:
        shifts = dict(zip(BATCH_SIZES, [0, scatter, -scatter, scatter, -scatter, 0], strict=True))
        lrs = [float(lr) for lr in np.logspace(-4, 0, 16)]
        ridge = _fit(_grid("sgd", lambda batch: 1e-4 * batch * 10 ** shifts[batch], lrs=lrs))[
            "sgd"
        ].ridge
        assert ridge is not None
        return ridge.alpha_interval[1] - ridge.alpha_interval[0]

    assert interval(0.0) < interval(0.2) < interval(0.4)


def test_trials_at_chance_do_not_pull_the_fit():
    trials = _grid("sgd", lambda batch: 1e-4 * batch)
    clean = {chance: _fit(trials, chance=chance)["sgd"].ridge for chance in (0.1, None)}
    # chance-level trials at extreme lrs, at the fitted batch sizes and at one with nothing else
    for batch_size in [*BATCH_SIZES, 1024]:
        for lr in (1e-5, 5.0):
            trials.append(_trial(len(trials), "sgd", batch_size, lr, [0.1, 0.1, 0.1]))
    for chance, before in clean.items():
        ridge = _fit(trials, chance=chance)["sgd"].ridge
        assert ridge is not None and before is not None
        assert ridge.batch_range == (16, 512)
        assert ridge.alpha == pytest.approx(before.alpha) and abs(ridge.alpha - 1) < 0.15


def test_too_few_batch_sizes_or_trials_give_a_reason_and_no_ridge():
    two_sizes = _grid("adam", lambda batch: 1e-3, batch_sizes=[32, 64])
    fit = _fit(two_sizes, chance=0.1)["adam"]
    assert fit.ridge is None
    assert fit.reason == (
        "it needs trials that learned at 3 batch sizes (less than a factor 1.41 apart count as "
        "one), this study has 2"
    )
    few = _grid("adam", lambda batch: 1e-3, batch_sizes=[16, 64, 256], lrs=[1e-3])
    fit = _fit(few, chance=0.1)["adam"]
    assert fit.ridge is None and fit.reason is not None and "\n" not in fit.reason
    assert fit.reason == "it needs 6 trials that learned, this study has 3"
    assert _fit([]) == {}


def test_a_surge_of_the_best_adam_lr_is_found_and_fitted_below_its_peak():
    def surge(batch):
        return 1e-3 * (batch / 16) ** 0.5 if batch <= 128 else 1e-3 * 8**0.5 * (128 / batch)

    ridge = _fit(_grid("adam", surge, lrs=[float(lr) for lr in np.logspace(-4, -1, 12)]))[
        "adam"
    ].ridge
    assert ridge is not None and ridge.surge_peak is not None
    assert 64 <= ridge.surge_peak <= 256
    assert ridge.batch_range[1] <= ridge.surge_peak
    assert abs(ridge.alpha - 0.5) < 0.25
    assert "surges to a peak" in ridge.describe()


def test_a_ridge_reads_back_from_its_record_and_names_a_damaged_key():
    ridge = _fit(_grid("sgd", lambda batch: 1e-4 * batch))["sgd"].ridge
    assert ridge is not None
    record = ridge.to_record()
    assert Ridge.from_record(record) == ridge
    for key, damage in [("alpha", "0.9"), ("batch_range", [512, 16]), ("surge_peak", True)]:
        with pytest.raises(BatchlrError, match=f"'{key}'"):
            Ridge.from_record({**record, key: damage})
    with pytest.raises(BatchlrError, match="'trials' is missing"):
        Ridge.from_record({key: value for key, value in record.items() if key != "trials"})


def _band_study(spread: float) -> list[optuna.trial.FrozenTrial]:
    """Trials whose mean fold scores fall by 0.01 per step from 0.9, over batch sizes 16 to
    256; each fold's offset from the mean is ``spread`` times a fixed pattern."""
    pattern = [[1.0, -1.0, 0.5, -0.5], [-1.0, 1.0, -0.5, 0.5]]
    return [
        _trial(
            index,
            "sgd",
            16 * 2**index,
            0.01 * 2**index,
            [0.9 - 0.01 * index + spread * offset for offset in pattern[index % 2]],
        )
        for index in range(5)
    ]


def test_the_band_widens_as_the_fold_scores_spread():
    tight, loose = near_optimal_band(_band_study(0.001)), near_optimal_band(_band_study(0.02))
    assert tight is not None and loose is not None
    assert tight.best_trial == loose.best_trial == 0
    assert tight.members == (0,) and tight.batch_range == (16, 16)
    assert len(loose.members) > len(tight.members)
    assert loose.batch_range[1] > tight.batch_range[1]
    assert loose.lr_ranges["sgd"][16] == (0.01, 0.01)


def test_the_band_keeps_ties_and_leaves_out_diverged_folds():
    trials = [
        _trial(0, "sgd", 32, 0.1, [0.9, 0.9, 0.9]),
        _trial(1, "sgd", 32, 0.2, [0.9, 0.9, 0.9]),
        _trial(2, "adam", 64, 1e-3, [0.95, float("nan"), 0.95]),
        _trial(3, "adam", 128, 1e-3, [0.9, 0.9]),
    ]
    band = near_optimal_band(trials)
    assert band is not None and band.members == (0, 1)
    assert band.lr_ranges == {"sgd": {32: (0.1, 0.2)}}
    assert near_optimal_band(trials[2:3]) is None  # nothing with finite fold scores


def test_a_band_reads_back_from_its_record_and_names_a_damaged_key():
    band = near_optimal_band(_band_study(0.02))
    record = band.to_record()
    assert Band.from_record(record) == band
    with pytest.raises(BatchlrError, match="'best_trial'"):
        Band.from_record({**record, "best_trial": "0"})
    with pytest.raises(BatchlrError, match="'members'"):
        Band.from_record({**record, "members": [0, 1.5]})
    with pytest.raises(BatchlrError, match="'lr'"):
        Band.from_record({**record, "lr_ranges": [{"optimizer": "sgd", "batch_size": 16}]})
