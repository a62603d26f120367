"""``--stop auto``: end a run when more trials cannot help, judged against the noise of the
cross-validation itself rather than a fixed trial count.

The rule is a stagnation test with the folds' noise as its threshold: once
:data:`STOP_MIN_TRIALS` trials are complete, the run stops when none of the last
:data:`PATIENCE` complete trials beat the best trial before them by more than the standard error
of that best trial's fold scores. (Optuna's terminator, which compares a regret bound with the
same noise, is deprecated since Optuna 4.9 and leaves in 6.0.)
"""

from __future__ import annotations

import math

import optuna
from optuna.trial import FrozenTrial, TrialState

from batchlr.objectives.trial_record import TrialRecord
from batchlr.studies.store.data_facts import Stop, save_stop
from batchlr.studies.store.summary import standard_error

STOP_MIN_TRIALS = 15
"""Complete trials before a run may stop: start-up and a few guided trials."""
PATIENCE = 10
"""Complete trials in a row that must fail to beat the best by more than its noise."""


def stagnated(complete: list[FrozenTrial]) -> bool:
    """Whether the last :data:`PATIENCE` of ``complete`` (single-objective trials, in order)
    failed to beat the best before them by more than the standard error of its fold scores."""
    if len(complete) < max(STOP_MIN_TRIALS, PATIENCE + 1):
        return False
    earlier, recent = complete[:-PATIENCE], complete[-PATIENCE:]
    best = max(earlier, key=lambda trial: trial.values[0])
    noise = standard_error(TrialRecord.from_trial(best).fold_scores or [])
    margin = noise if math.isfinite(noise) else 0.0
    latest: float = max(trial.values[0] for trial in recent)
    best_value: float = best.values[0]
    return latest <= best_value + margin


def stop_if_done(study: optuna.Study) -> Stop | None:
    """Where :func:`stagnated` finds ``study`` done, the stop, kept with the study (see
    :func:`~batchlr.studies.store.last_stop`); else None."""
    trials = study.get_trials(deepcopy=False)
    complete = sorted(
        (trial for trial in trials if trial.state == TrialState.COMPLETE),
        key=lambda each: each.number,
    )
    if not stagnated(complete):
        return None
    stop = Stop(
        len(complete),
        f"none of the last {PATIENCE} complete trials beat the best before them by more than "
        "the standard error of its fold scores",
        len(trials),
    )
    save_stop(study, stop)
    return stop


class StopWhenDone:
    """A study callback: after each trial, stop the study once it is done (see
    :func:`stop_if_done`)."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if stop_if_done(study):
            study.stop()
