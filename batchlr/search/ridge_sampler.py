"""A sampler that knows the ridge: the best learning rate moves with the batch size as a power
law, so once a few batch sizes are explored, the learning rates worth trying at a new batch
size are a narrow range rather than four decades.

No other tool uses that coupling to steer a search: Optuna, Ray Tune, W&B and KerasTuner treat
batch size and learning rate as unrelated knobs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from batchlr.errors import BatchlrError
from batchlr.search.ridge import Ridge, ScoredTrial, fit_ridges
from batchlr.search.space import Hyperparameters, SearchSpace

STARTUP_TRIALS = 10
"""Complete trials before the ridge steers: TPE's own start-up, which explores at random."""
EXPLORE = 0.2
"""The share of later learning rates still drawn by TPE, so that a wrong ridge can be left."""
MIN_SPREAD = 0.15
"""The least standard deviation, in decades, of a learning rate drawn around the ridge: about
the width of the band of equally good learning rates at one batch size."""


class RidgeSampler(optuna.samplers.BaseSampler):
    """TPE for every param but the learning rate (the optimizer, the batch size where TPE
    expects the most gain, momentum, weight decay); after :data:`STARTUP_TRIALS` complete trials,
    the learning rate of a trial is drawn log-normally around the ridge that
    :func:`~batchlr.search.ridge.fit_ridges` fits to the complete trials of its optimizer, at its
    batch size, spread by the ridge's uncertainty there (the interval of its exponent, times the
    distance in log batch size from the reference batch) and at least :data:`MIN_SPREAD` decade.
    A share :data:`EXPLORE` of the learning rates, and all of an optimizer without a ridge yet,
    are TPE's. Under an lr scaling rule the proposal is of the ``base_lr`` that scales to it.

    Its state is the storage's trials alone, so workers and processes on one storage share it.
    """

    def __init__(self, space: SearchSpace, seed: int | None = None) -> None:
        self._space = space
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
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(complete) < STARTUP_TRIALS or optimizer is None or batch_size is None:
            return None
        if self._rng.random() < EXPLORE:
            return None
        ridge = fit_ridges(self._points(complete)).get(optimizer)
        if ridge is None or ridge.ridge is None:
            return None
        log_lr = self._rng.normal(
            math.log10(ridge.ridge.lr(batch_size)), _spread(ridge.ridge, batch_size)
        )
        scale = self._space.lr_scaling.lr(1.0, batch_size, optimizer)
        value = 10**log_lr / scale
        return float(min(max(value, distribution.low), distribution.high))

    def _points(self, complete: list[FrozenTrial]) -> list[ScoredTrial]:
        """The complete trials as the fit's points, each with the lr it trained with."""
        points = []
        for trial in complete:
            try:
                drawn = Hyperparameters.from_params(trial.params, self._space)
            except BatchlrError:
                continue  # a trial another sampler or program added, of other params
            if math.isfinite(trial.values[0]):
                points.append(
                    ScoredTrial(
                        trial.number,
                        drawn.optimizer,
                        drawn.batch_size,
                        drawn.lr,
                        trial.values[0],
                        (),
                    )
                )
        return points


def _spread(ridge: Ridge, batch_size: int) -> float:
    """The standard deviation, in decades, of the ridge's lr at ``batch_size``: the exponent's
    interval (a 95 % one: about four standard deviations wide) times the distance from the
    reference batch, at least :data:`MIN_SPREAD`."""
    low, high = ridge.alpha_interval
    width = (high - low) / 4 if math.isfinite(high - low) else 1.0
    return max(MIN_SPREAD, width * abs(math.log10(batch_size / ridge.reference_batch)))
