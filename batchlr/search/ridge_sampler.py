"""A sampler that knows the ridge: the best learning rate moves with the batch size as a power
law, so the learning rates worth trying at a batch size are a narrow range rather than four
decades: around the textbook ridge before a study has measured its own, around the fitted one
after.

No other tool uses that coupling to steer a search: Optuna, Ray Tune, W&B and KerasTuner treat
batch size and learning rate as unrelated knobs.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from batchlr.errors import BatchlrError
from batchlr.search.ridge import Ridge, ScoredTrial, fit_ridges
from batchlr.search.space import MOMENTUM_OPTIMIZERS, Hyperparameters, SearchSpace

STARTUP_TRIALS = 10
"""Scored trials (see :func:`round_scores`) before a fitted ridge steers; the prior ridge
steers until then, and for an optimizer the fit finds no ridge for."""
EXPLORE = 0.2
"""The share of learning rates still drawn by TPE, so that a wrong ridge can be left."""
MIN_SPREAD = 0.15
"""The least standard deviation, in decades, of a learning rate drawn around a fitted ridge:
about the width of the band of equally good learning rates at one batch size."""
PRIOR_SPREAD = 0.5
"""The standard deviation, in decades, of a learning rate drawn around the prior ridge: wide
enough for a data set whose best lr lies a decade off the textbook's."""
PRIOR_REFERENCE_BATCH = 64
"""The batch size at which :data:`PRIOR_RIDGES` give their levels."""
PRIOR_RIDGES: dict[str, tuple[float, float]] = {
    "sgd": (0.5, 0.5),
    "adam": (2e-3, 0.5),
    "adamw": (2e-3, 0.5),
    "rmsprop": (1e-3, 0.5),
}
"""Each optimizer's textbook ridge of the effective lr (see :func:`effective_lr`), its value at
batch :data:`PRIOR_REFERENCE_BATCH` and its exponent. SGD's level is lr 0.05 with momentum 0.9
(issue 22's CIFAR grid measured 0.056 at 64; Goyal et al. 2017 train with 0.1 at 256), Adam's
the customary 1e-3 to 3e-3 (issue 22 measured 0.002 to 0.003), RMSProp's 1e-3 without momentum.
Every exponent is the square root's: the adaptive optimizers' (Malladi et al. 2022), and
SGD's past its critical batch size, which a small data set reaches early (linear scaling
sent SGD's lr past 1 at batch 300 on digits, where it learned nothing; issue 22 measured
SGD's exponent 0.70 [0.39, 1.01] on the CIFAR subset)."""
PRIOR_ALPHA_SPREAD = 0.25
"""The standard deviation of the prior exponent, so that linear scaling lies two of them from
it; a fitted exponent is shrunk towards the prior's as far as the fit is uncertain."""
_DRAWS = 100
"""Draws before a range that holds under about 1 % of a ridge's mass is left to TPE."""
_LEAST_ALPHA_SPREAD = 1e-3
"""A floor under the fitted exponent's spread: three batch sizes exactly on a line give an
interval of zero width, which trusts the fit outright (the prior then weighs a millionth)."""


class RidgeSampler(optuna.samplers.BaseSampler):
    """TPE for every param but the learning rate (the optimizer, the batch size where TPE
    expects the most gain, momentum, weight decay); the learning rate of a trial is drawn
    log-normally around a ridge at its batch size, within the param's range:

    - until :data:`STARTUP_TRIALS` trials are scored, and for an optimizer without a fitted
      ridge, around :data:`PRIOR_RIDGES`, spread :data:`PRIOR_SPREAD` decade;
    - after, around the ridge that :func:`~batchlr.search.ridge.fit_ridges` fits to the scored
      trials of the trial's optimizer that learned (above ``chance``, the accuracy of
      guessing, where given), its exponent shrunk towards the textbook's as far as it is
      uncertain, spread by that uncertainty there (see :func:`_fitted`).

    The ridges are of the effective lr, ``lr / (1 - momentum)``: the momentum is drawn first,
    and the lr drawn is the effective one times ``1 - momentum``; fitted on the lr alone, SGD's
    best lr would spread over the two decades that its momentum's range (0 to 0.99) spans.
    A share :data:`EXPLORE` of the learning rates are TPE's, and so are all of a range that
    lies far from the ridge (the user's ``--lr`` knows better). Under an lr scaling rule the
    proposal is of the ``base_lr`` that scales to it.

    Its state is the storage's trials alone, so workers and processes on one storage share it.
    """

    def __init__(
        self,
        space: SearchSpace,
        seed: int | None = None,
        chance: float | None = None,
    ) -> None:
        self._space = space
        self._chance = chance
        self._base = optuna.samplers.TPESampler(seed=seed)
        self._rng = np.random.default_rng(seed)

    def reseed_rng(self) -> None:
        self._base.reseed_rng()
        self._rng = np.random.default_rng()

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        # The lr is left to sample_independent, which knows the trial's batch size by then.
        space = self._base.infer_relative_search_space(study, trial)
        return {name: value for name, value in space.items() if name != self._space.lr_param}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._base.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        if param_name == self._space.lr_param and isinstance(param_distribution, FloatDistribution):
            proposed = self._along_the_ridge(study, trial, param_distribution)
            if proposed is not None:
                return proposed
        return self._base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._base.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._base.after_trial(study, trial, state, values)

    def _along_the_ridge(
        self, study: optuna.Study, trial: FrozenTrial, distribution: FloatDistribution
    ) -> float | None:
        """The lr param drawn around the ridge of the trial's optimizer, or None for TPE's."""
        optimizer, batch_size = trial.params.get("optimizer"), trial.params.get("batch_size")
        if optimizer not in PRIOR_RIDGES or not isinstance(batch_size, int):
            return None
        if self._rng.random() < EXPLORE:
            return None
        centre, spread = _prior(optimizer, batch_size)
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        scored = round_scores(finished)
        if len(scored) >= STARTUP_TRIALS:
            fit = fit_ridges(self._points(scored), self._chance).get(optimizer)
            if fit is not None and fit.ridge is not None:
                centre, spread = _fitted(fit.ridge, batch_size)
        # The range is of the param: the base lr that the scaling rule scales to the lr, and
        # the momentum (drawn before the lr by SearchSpace.suggest) to the effective lr.
        momentum = trial.params["momentum"] if optimizer in MOMENTUM_OPTIMIZERS else 0.0
        scale = math.log10(self._space.lr_scaling.lr(1.0, batch_size, optimizer))
        scale -= math.log10(1 - momentum)
        low, high = math.log10(distribution.low) + scale, math.log10(distribution.high) + scale
        draws = self._rng.normal(centre, spread, _DRAWS)
        inside = draws[(draws >= low) & (draws <= high)]
        if not len(inside):
            return None
        return float(np.clip(10 ** (inside[0] - scale), distribution.low, distribution.high))

    def _points(self, scored: list[tuple[FrozenTrial, float]]) -> list[ScoredTrial]:
        """The scored trials as the fit's points, each with its effective lr."""
        points = []
        for trial, value in scored:
            try:
                drawn = Hyperparameters.from_params(trial.params, self._space)
            except BatchlrError:
                continue  # a trial another sampler or program added, of other params
            lr = effective_lr(drawn)
            points.append(
                ScoredTrial(trial.number, drawn.optimizer, drawn.batch_size, lr, value, ())
            )
        return points


def round_scores(finished: Sequence[FrozenTrial]) -> list[tuple[FrozenTrial, float]]:
    """The ``finished`` trials with a finite accuracy to compare them by: their mean fold
    accuracy at the deepest round (epoch, or tenth of a step budget) that at least half of
    them reached, pruned trials included. Under ASHA, which prunes most trials after their
    first epoch, that is the first epoch for the whole study: a ridge of one epoch's training,
    whose best lrs can sit higher than the full budget's, but one of every trial rather than
    of the few that ASHA promotes by their early accuracy. Without rounds (in a study of two
    objectives, which reports none), the complete trials' accuracy."""
    reached = collections.Counter(step for trial in finished for step in trial.intermediate_values)
    deep = [step for step, count in reached.items() if 2 * count >= len(finished)]
    if deep:
        step = max(deep)
        scores = [(trial, trial.intermediate_values.get(step, math.nan)) for trial in finished]
    else:
        scores = [
            (trial, trial.values[0]) for trial in finished if trial.state == TrialState.COMPLETE
        ]
    return [(trial, value) for trial, value in scores if math.isfinite(value)]


def effective_lr(hyperparameters: Hyperparameters) -> float:
    """The lr over ``1 - momentum``: the step that a steady gradient's momentum settles to,
    what the best lr at a batch size fixes (the momentum alone trades against the lr)."""
    return hyperparameters.lr / (1 - (hyperparameters.momentum or 0.0))


def _prior(optimizer: str, batch_size: int) -> tuple[float, float]:
    """The prior ridge's log10 lr at ``batch_size`` and its spread in decades."""
    lr, alpha = PRIOR_RIDGES[optimizer]
    return math.log10(lr * (batch_size / PRIOR_REFERENCE_BATCH) ** alpha), PRIOR_SPREAD


def _fitted(ridge: Ridge, batch_size: int) -> tuple[float, float]:
    """The fitted ridge's log10 lr at ``batch_size`` and its spread in decades.

    Its exponent is shrunk towards the textbook's: a normal prior at the exponent of
    :data:`PRIOR_RIDGES`, :data:`PRIOR_ALPHA_SPREAD` wide, times the fit's (its 95 % interval
    is about four standard deviations wide), so that a fit of a few batch sizes close together
    does not fling the lr decades away at a batch size far from them. The spread is the
    exponent's standard deviation times the distance in decades from the reference batch, at
    least :data:`MIN_SPREAD`.
    """
    low, high = ridge.alpha_interval
    prior_alpha = PRIOR_RIDGES[ridge.optimizer][1]
    precisions = [PRIOR_ALPHA_SPREAD**-2, 0.0]
    if math.isfinite(high - low):
        precisions[1] = max((high - low) / 4, _LEAST_ALPHA_SPREAD) ** -2
    alpha = (prior_alpha * precisions[0] + ridge.alpha * precisions[1]) / sum(precisions)
    distance = math.log10(batch_size / ridge.reference_batch)
    centre = math.log10(ridge.lr_at_reference) + alpha * distance
    return centre, max(MIN_SPREAD, abs(distance) * sum(precisions) ** -0.5)
