"""``--stop auto``: end a run when more trials cannot help, judged against the noise of the
cross-validation itself rather than a fixed trial count.

The rule is a stagnation test with the folds' noise as its threshold: once
:data:`STOP_MIN_TRIALS` trials are finished (complete or pruned), the run stops when none of the
last :data:`PATIENCE` finished trials beat the best trial before them by more than the standard
error of that best trial's fold scores. A pruned trial beats it only by its last report, as its
pruner judged it behind; counting complete trials alone, under ASHA, which prunes most trials,
the rule would judge only after about 70 trials. A trial pruned for running out of memory
trained nothing and does not count. (Optuna's terminator, which compares a regret bound with
the same noise, is deprecated since Optuna 4.9 and leaves in 6.0.)
"""

from __future__ import annotations

import math

import optuna
from optuna.trial import FrozenTrial, TrialState

from batchlr.objectives.trial_record import TrialRecord
from batchlr.studies.store.data_facts import Stop, save_stop
from batchlr.studies.store.summary import FINISHED, standard_error

STOP_MIN_TRIALS = 15
"""Finished trials before a run may stop: start-up and a few guided trials."""
PATIENCE = 10
"""Finished trials in a row that must fail to beat the best by more than its noise."""


def stagnated(finished: list[FrozenTrial]) -> bool:
    """Whether the last :data:`PATIENCE` of ``finished`` (single-objective trials, complete or
    pruned, in order) failed to beat the best complete trial before them by more than the
    standard error of its fold scores: a complete trial by its value, a pruned one by its last
    report."""
    if len(finished) < max(STOP_MIN_TRIALS, PATIENCE + 1):
        return False
    earlier, recent = finished[:-PATIENCE], finished[-PATIENCE:]
    complete = [trial for trial in earlier if trial.state == TrialState.COMPLETE]
    if not complete:
        return False
    best = max(complete, key=lambda trial: trial.values[0])
    noise = standard_error(TrialRecord.from_trial(best).fold_scores or [])
    margin = noise if math.isfinite(noise) else 0.0
    best_value: float = best.values[0]
    return not any(_last_score(trial) > best_value + margin for trial in recent)


def _last_score(trial: FrozenTrial) -> float:
    """A complete trial's value, a pruned trial's last report (-inf where it made none)."""
    if trial.state == TrialState.COMPLETE:
        return float(trial.values[0])
    reports = trial.intermediate_values
    return reports[max(reports)] if reports else -math.inf


def stop_if_done(study: optuna.Study) -> Stop | None:
    """Where :func:`stagnated` finds ``study`` done, the stop, kept with the study (see
    :func:`~batchlr.studies.store.last_stop`); else None."""
    trials = study.get_trials(deepcopy=False)
    finished = sorted(
        (
            trial
            for trial in trials
            if trial.state in FINISHED and TrialRecord.from_trial(trial).reason != "oom"
        ),
        key=lambda each: each.number,
    )
    if not stagnated(finished):
        return None
    stop = Stop(
        len(finished),
        f"none of the last {PATIENCE} finished trials beat the best before them by more than "
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
