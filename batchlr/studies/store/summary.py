"""Listing the studies in a storage, describing one study, and picking a trial from it.

A batchlr study's first objective is accuracy; a two-objective study adds training seconds.
Studies made with Optuna itself may minimise or maximise anything: what is best follows
each study's directions.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import Counter
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.objectives.trial_record import TrialRecord
from batchlr.studies.store.data_facts import Stop, last_stop
from batchlr.studies.store.spec import StudySpec
from batchlr.studies.store.stored_spec import LABELS_ATTR, study_spec_or_none
from batchlr.studies.store.study_creation import is_unfinished

REFIT_ATTRS = ("test_accuracy", "test_split", "refit_trial", "test_images", "refit_images")
"""Study user attrs ``batchlr refit`` records: the test score, where it was measured, of which
trial, on how many images, and how many it trained on."""

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
"""The trials that ran to an end: trained all their epochs, or stopped by the pruner."""

_SHOWN_STATES = (
    TrialState.COMPLETE,
    TrialState.PRUNED,
    TrialState.FAIL,
    TrialState.RUNNING,
    TrialState.WAITING,
)


@dataclasses.dataclass(frozen=True)
class StudySummary:
    """One line of ``batchlr studies``."""

    name: str
    trials_by_state: dict[str, int]
    best_value: float | None
    unfinished: bool = False
    """Being created through a storage proxy, or its creation died (see
    :func:`~batchlr.studies.store.study_creation.is_unfinished`)."""


def list_studies(storage: optuna.storages.BaseStorage) -> list[StudySummary]:
    """Every study in ``storage``, by name, with its best first-objective value."""
    summaries = []
    for frozen in sorted(storage.get_all_studies(), key=lambda study: study.study_name):
        trials = storage.get_all_trials(
            storage.get_study_id_from_name(frozen.study_name), deepcopy=False
        )
        states = Counter(trial.state.name for trial in trials)
        complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
        best = _best(complete, frozen.directions[0])
        summaries.append(
            StudySummary(
                name=frozen.study_name,
                trials_by_state={state.name: states.get(state.name, 0) for state in _SHOWN_STATES},
                best_value=best.values[0] if best else None,
                unfinished=is_unfinished(frozen.system_attrs, LABELS_ATTR),
            )
        )
    return summaries


def _best(trials: list[FrozenTrial], direction: StudyDirection) -> FrozenTrial | None:
    pick = min if direction == StudyDirection.MINIMIZE else max
    return pick(trials, key=lambda trial: trial.values[0], default=None)


def _best_first(study: optuna.Study, trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """``trials`` by their first objective value, best first by the study's first direction."""
    return sorted(
        trials,
        key=lambda trial: trial.values[0],
        reverse=study.directions[0] == StudyDirection.MAXIMIZE,
    )


def load_existing_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """The study ``name``; a clear error that lists the studies there when it is absent."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError as error:
        names = sorted(study.study_name for study in storage.get_all_studies())
        listing = ", ".join(names) if names else "none"
        raise BatchlrError(
            f"no study {name!r} in this storage (studies there: {listing})"
        ) from error


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def best_complete_trial_or_none(study: optuna.Study) -> FrozenTrial | None:
    """The complete trial with the best first objective value (a batchlr study's accuracy), if any."""
    return _best(_complete(study), study.directions[0])


def best_complete_trial(study: optuna.Study) -> FrozenTrial:
    """The complete trial with the best accuracy (the first objective).

    Raises:
        BatchlrError: when no trial has completed yet.
    """
    best = best_complete_trial_or_none(study)
    if best is None:
        raise BatchlrError(
            f"study {study.study_name!r} has no complete trial yet; run more trials with batchlr "
            f"run --study {study.study_name}"
        )
    return best


def fastest_within(study: optuna.Study, delta: float) -> FrozenTrial:
    """The complete trial that trained fastest among those within ``delta`` accuracy of the best."""
    if delta < 0:
        raise BatchlrUsageError(
            f"fastest-within {delta}: DELTA is an accuracy difference and cannot be negative"
        )
    threshold = best_complete_trial(study).values[0] - delta
    close = [trial for trial in _complete(study) if trial.values[0] >= threshold]
    return min(close, key=_train_seconds_or_inf)


def _train_seconds_or_inf(trial: FrozenTrial) -> float:
    """``trial``'s training seconds; infinitely many where it lacks them, so that it is last."""
    seconds = TrialRecord.from_trial(trial).train_seconds
    return math.inf if seconds is None else seconds


def top_trials(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The ``k`` complete trials with the best first objective value (a batchlr study's accuracy), best first."""
    return _best_first(study, _complete(study))[:k]


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front of a study of several objectives (batchlr's: accuracy/time), best by
    the first objective first; empty for a single objective."""
    if len(study.directions) < 2:
        return []
    return _best_first(study, study.best_trials)


def metric_labels(study: optuna.Study) -> list[str]:
    """The names of a study's objectives: those it was given (``set_metric_names``), else
    ``value``, or ``value 0``, ``value 1``, ... for several."""
    if study.metric_names:
        return list(study.metric_names)
    count = len(study.directions)
    return ["value"] if count == 1 else [f"value {index}" for index in range(count)]


def standard_error(scores: list[float]) -> float:
    """The standard error of the mean of ``scores``: nan for fewer than two, or when one is
    not finite (where ``statistics.stdev`` of Python 3.11 raises AttributeError)."""
    if len(scores) < 2 or not all(map(math.isfinite, scores)):
        return math.nan
    return statistics.stdev(scores) / math.sqrt(len(scores))


def trial_json(trial: FrozenTrial) -> dict[str, Any]:
    """A trial as JSON values: number, values, params and every user attr, batchlr's as its
    :class:`TrialRecord` reads them (fold scores checked) and other code's as stored."""
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.values[0] if trial.values else None,
        "values": trial.values,
        "params": trial.params,
        "user_attrs": {**trial.user_attrs, **TrialRecord.from_trial(trial).to_attrs()},
    }


@dataclasses.dataclass(frozen=True)
class StudyDescription:
    """What ``batchlr show`` reports of a study; :meth:`to_json` is what ``--json`` prints.

    ``spec`` is None for a study not made by batchlr, ``best`` while no trial has completed,
    and ``refit`` while ``batchlr refit`` has not scored the study. ``directions`` and
    ``metrics`` name the objectives, in order; ``reasons`` counts why trials stopped early.
    """

    study: str
    spec: StudySpec | None
    directions: list[str]
    metrics: list[str]
    refit: dict[str, Any] | None
    trials_by_state: dict[str, int]
    reasons: dict[str, int]
    best: FrozenTrial | None
    top: list[FrozenTrial]
    pareto: list[FrozenTrial]
    stop: Stop | None

    def to_json(self) -> dict[str, Any]:
        """The description as JSON values, each trial as :func:`trial_json` writes it."""
        return {
            "study": self.study,
            "settings": None if self.spec is None else self.spec.to_attrs(),
            "directions": self.directions,
            "metrics": self.metrics,
            "refit": self.refit,
            "trials_by_state": self.trials_by_state,
            "reasons": self.reasons,
            "best": None if self.best is None else trial_json(self.best),
            "top": [trial_json(trial) for trial in self.top],
            "pareto": [trial_json(trial) for trial in self.pareto],
            "stop": None if self.stop is None else self.stop._asdict(),
        }


def describe(study: optuna.Study, k: int) -> StudyDescription:
    """What ``batchlr show`` reports of ``study``, with its ``k`` best trials.

    Raises:
        BatchlrError: for a study whose batchlr settings are damaged (see :func:`study_spec_or_none`).
    """
    spec = study_spec_or_none(study)
    trials = study.get_trials(deepcopy=False)
    reasons = (TrialRecord.from_trial(trial).reason for trial in trials)
    refit = {key: study.user_attrs[key] for key in REFIT_ATTRS if key in study.user_attrs}
    return StudyDescription(
        study=study.study_name,
        spec=spec,
        directions=[direction.name.lower() for direction in study.directions],
        metrics=metric_labels(study) if spec is None else spec.metric_names,
        refit=refit or None,
        trials_by_state=dict(Counter(trial.state.name for trial in trials)),
        reasons=dict(Counter(reason for reason in reasons if reason is not None)),
        best=best_complete_trial_or_none(study),
        top=top_trials(study, k),
        pareto=pareto_trials(study),
        stop=last_stop(study),
    )
