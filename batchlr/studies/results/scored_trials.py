"""A study's complete trials as the scored points the ridge and band are fitted to."""

from __future__ import annotations

import math
from collections.abc import Sequence

from optuna.trial import FrozenTrial, TrialState

from batchlr.objectives.trial_record import TrialRecord
from batchlr.search.ridge import ScoredTrial
from batchlr.search.space import Hyperparameters, SearchSpace


def scored_trials(trials: Sequence[FrozenTrial], space: SearchSpace | None) -> list[ScoredTrial]:
    """The complete ``trials`` with a finite accuracy, by batch size, lr and number.

    Raises:
        BatchlrError: for a complete trial whose params are not those of ``space``.
    """
    read = []
    for trial in trials:
        if trial.state != TrialState.COMPLETE or not math.isfinite(trial.values[0]):
            continue
        record = TrialRecord.from_trial(trial)
        drawn = Hyperparameters.from_params(trial.params, space)
        lr = drawn.lr if record.lr is None else record.lr
        scores = tuple(record.fold_scores or ())
        read.append(
            ScoredTrial(
                trial.number, drawn.optimizer, drawn.batch_size, lr, trial.values[0], scores
            )
        )
    return sorted(read, key=lambda trial: (trial.batch_size, trial.lr, trial.number))
