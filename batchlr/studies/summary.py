"""Listing the studies in a storage and describing one study's best trials."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from batchlr.errors import BatchlrError


@dataclasses.dataclass(frozen=True)
class StudySummary:
    """One line of ``batchlr studies``."""

    name: str
    trials_by_state: dict[str, int]
    best_value: float | None
    dataset: str | None
    model: str | None


def list_studies(storage: optuna.storages.BaseStorage) -> list[StudySummary]:
    """Every study in ``storage``, by name."""
    summaries = []
    for frozen in sorted(storage.get_all_studies(), key=lambda study: study.study_name):
        trials = storage.get_all_trials(storage.get_study_id_from_name(frozen.study_name), deepcopy=False)
        states = Counter(trial.state.name for trial in trials)
        complete = [trial.value for trial in trials if trial.state == TrialState.COMPLETE and trial.values]
        summaries.append(
            StudySummary(
                name=frozen.study_name,
                trials_by_state={state.name: states.get(state.name, 0) for state in _SHOWN_STATES},
                best_value=(min if frozen.direction == StudyDirection.MINIMIZE else max)(complete, default=None),
                dataset=frozen.user_attrs.get("dataset"),
                model=frozen.user_attrs.get("model"),
            )
        )
    return summaries


_SHOWN_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)


def load_existing_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """The study ``name``; a clear error that lists the studies there when it is absent."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = sorted(study.study_name for study in storage.get_all_studies())
        listing = ", ".join(names) if names else "none"
        raise BatchlrError(f"no study {name!r} in this storage (studies there: {listing})") from None


def best_complete_trial(study: optuna.Study) -> FrozenTrial:
    """The best complete trial.

    Raises:
        BatchlrError: when no trial has completed yet.
    """
    try:
        return study.best_trial
    except ValueError:
        raise BatchlrError(
            f"study {study.study_name!r} has no complete trial yet; run more trials with batchlr run --study {study.study_name}"
        ) from None


def top_trials(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The ``k`` best complete trials, best first."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(complete, key=lambda trial: trial.value, reverse=True)[:k]


def trial_record(trial: FrozenTrial) -> dict[str, Any]:
    """A trial as JSON values: number, value, params and what batchlr recorded on it."""
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "params": trial.params,
        "user_attrs": trial.user_attrs,
    }


def describe(study: optuna.Study, k: int) -> dict[str, Any]:
    """What ``batchlr show --json`` prints."""
    states = Counter(trial.state.name for trial in study.get_trials(deepcopy=False))
    return {
        "study": study.study_name,
        "settings": study.user_attrs,
        "trials_by_state": dict(states),
        "best": trial_record(best_complete_trial(study)),
        "top": [trial_record(trial) for trial in top_trials(study, k)],
    }
