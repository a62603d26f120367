"""Listing the studies in a storage, describing one study, and picking a trial from it.

A study's first objective is always accuracy; a two-objective study adds training seconds.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
from collections import Counter
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from batchlr.errors import BatchlrError, BatchlrUsageError

_SHOWN_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING)


@dataclasses.dataclass(frozen=True)
class StudySummary:
    """One line of ``batchlr studies``."""

    name: str
    trials_by_state: dict[str, int]
    best_value: float | None


def list_studies(storage: optuna.storages.BaseStorage) -> list[StudySummary]:
    """Every study in ``storage``, by name, with its best first-objective value."""
    summaries = []
    for frozen in sorted(storage.get_all_studies(), key=lambda study: study.study_name):
        trials = storage.get_all_trials(storage.get_study_id_from_name(frozen.study_name), deepcopy=False)
        states = Counter(trial.state.name for trial in trials)
        complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
        best = _best(complete, frozen.directions[0])
        summaries.append(
            StudySummary(
                name=frozen.study_name,
                trials_by_state={state.name: states.get(state.name, 0) for state in _SHOWN_STATES},
                best_value=best.values[0] if best else None,
            )
        )
    return summaries


def render_studies(summaries: list[StudySummary]) -> str:
    """The table ``batchlr studies`` prints: trials by state and best value, a study a line."""
    if not summaries:
        return "no studies"
    width = max(len("study"), *(len(summary.name) for summary in summaries))
    lines = [f"{'study':<{width}}  complete  pruned  fail  running  waiting  best"]
    for summary in summaries:
        counts = summary.trials_by_state
        best = "-" if summary.best_value is None else f"{summary.best_value:.4f}"
        lines.append(
            f"{summary.name:<{width}}  {counts['COMPLETE']:>8}  {counts['PRUNED']:>6}  {counts['FAIL']:>4}  {counts['RUNNING']:>7}  {counts['WAITING']:>7}  {best}"
        )
    return "\n".join(lines)


def _best(trials: list[FrozenTrial], direction: StudyDirection) -> FrozenTrial | None:
    pick = min if direction == StudyDirection.MINIMIZE else max
    return pick(trials, key=lambda trial: trial.values[0], default=None)


def load_existing_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """The study ``name``; a clear error that lists the studies there when it is absent."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = sorted(study.study_name for study in storage.get_all_studies())
        listing = ", ".join(names) if names else "none"
        raise BatchlrError(f"no study {name!r} in this storage (studies there: {listing})") from None


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def best_complete_trial_or_none(study: optuna.Study) -> FrozenTrial | None:
    """The complete trial with the best accuracy (the first objective), if any."""
    return _best(_complete(study), study.directions[0])


def best_complete_trial(study: optuna.Study) -> FrozenTrial:
    """The complete trial with the best accuracy (the first objective).

    Raises:
        BatchlrError: when no trial has completed yet.
    """
    best = best_complete_trial_or_none(study)
    if best is None:
        raise BatchlrError(
            f"study {study.study_name!r} has no complete trial yet; run more trials with batchlr run --study {study.study_name}"
        )
    return best


def fastest_within(study: optuna.Study, delta: float) -> FrozenTrial:
    """The complete trial that trained fastest among those within ``delta`` accuracy of the best."""
    if delta < 0:
        raise BatchlrUsageError(f"fastest-within {delta}: DELTA is an accuracy difference and cannot be negative")
    threshold = best_complete_trial(study).values[0] - delta
    close = [trial for trial in _complete(study) if trial.values[0] >= threshold]
    return min(close, key=lambda trial: trial.user_attrs.get("train_seconds", float("inf")))


def top_trials(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The ``k`` complete trials with the best accuracy, best first."""
    return sorted(_complete(study), key=lambda trial: trial.values[0], reverse=True)[:k]


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The accuracy/time Pareto front of a two-objective study, most accurate first; empty otherwise."""
    if len(study.directions) < 2:
        return []
    return sorted(study.best_trials, key=lambda trial: trial.values[0], reverse=True)


def trial_record(trial: FrozenTrial) -> dict[str, Any]:
    """A trial as JSON values: number, values, params and what batchlr recorded on it."""
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.values[0] if trial.values else None,
        "values": trial.values,
        "params": trial.params,
        "user_attrs": trial.user_attrs,
    }


def describe(study: optuna.Study, k: int) -> dict[str, Any]:
    """What ``batchlr show --json`` prints; ``best`` is None while no trial has completed."""
    trials = study.get_trials(deepcopy=False)
    best = best_complete_trial_or_none(study)
    return {
        "study": study.study_name,
        "settings": study.user_attrs,
        "trials_by_state": dict(Counter(trial.state.name for trial in trials)),
        "reasons": dict(Counter(trial.user_attrs["reason"] for trial in trials if "reason" in trial.user_attrs)),
        "best": None if best is None else trial_record(best),
        "top": [trial_record(trial) for trial in top_trials(study, k)],
        "pareto": [trial_record(trial) for trial in pareto_trials(study)],
    }


def describe_training(settings: dict[str, Any]) -> str:
    """One phrase for a study's budget, LR scaling, schedule and warmup, from its stored settings."""
    parts = [f"{settings.get('steps')} steps" if settings.get("budget") == "steps" else f"{settings.get('epochs')} epochs"]
    if settings.get("lr_scaling", "none") != "none":
        parts.append(f"lr {settings['lr_scaling']}-scaled from batch {settings['reference_batch_size']}")
    if settings.get("schedule", "constant") != "constant":
        parts.append(f"{settings['schedule']} schedule")
    if settings.get("warmup"):
        parts.append(f"{settings['warmup']:g} warmup epochs")
    return ", ".join(parts)


def render_report(report: dict[str, Any]) -> str:
    """The text ``batchlr show`` prints for a :func:`describe` report."""
    settings, best = report["settings"], report["best"]
    states = ", ".join(f"{count} {state.lower()}" for state, count in sorted(report["trials_by_state"].items())) or "none"
    heading = (
        f"study {report['study']}: {settings.get('dataset')} / {settings.get('model')}, "
        f"{settings.get('folds')} folds x {describe_training(settings)}; trials {states}"
    )
    if best is None:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(report["reasons"].items()))
        why = f" (ended: {reasons})" if reasons else ""
        return f"{heading}\nno complete trial yet{why}; run more trials, or widen --lr and --batch-size"
    folds = " ".join(f"{score:.4f}" for score in best["user_attrs"].get("fold_scores", [])) or "-"
    lines = [
        heading,
        f"best trial {best['number']}: accuracy {best['value']:.4f}, folds {folds}",
        *(f"  {key:<12} {value:.3g}" if isinstance(value, float) else f"  {key:<12} {value}" for key, value in sorted(best["params"].items())),
        "",
        f"top {len(report['top'])} by accuracy:",
        *_trial_table(report["top"]),
    ]
    if report["pareto"]:
        lines += ["", f"accuracy/time Pareto front ({len(report['pareto'])} trials):", *_trial_table(report["pareto"])]
    return "\n".join(lines)


def _trial_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [f"{'trial':>5}  {'accuracy':>8}  {'train s':>7}  {'batch':>5}  {'lr':>9}  {'optimizer':<9}  {'momentum':>8}  {'img/s':>7}"]
    for row in rows:
        params, attrs = row["params"], row["user_attrs"]
        momentum = "-" if params.get("momentum") is None else f"{params['momentum']:.3f}"
        lines.append(
            f"{row['number']:>5}  {row['value']:>8.4f}  {attrs.get('train_seconds', math.nan):>7.1f}  "
            f"{params.get('batch_size', '-'):>5}  {attrs.get('lr', params.get('lr', math.nan)):>9.3g}  "
            f"{params.get('optimizer', '-'):<9}  {momentum:>8}  {attrs.get('images_per_second', math.nan):>7.0f}"
        )
    return lines


def format_params(params: dict[str, Any]) -> str:
    """``key=value`` pairs, floats to three significant digits."""
    return " ".join(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}" for key, value in sorted(params.items()))


def render_outcome(study: optuna.Study, storage_option: str) -> str:
    """What ``batchlr run`` prints at the end: the best trial, the Pareto front, and what to do next."""
    best = best_complete_trial_or_none(study)
    if best is None:
        return "no trial has completed yet: every one was pruned or failed; run more, or widen the ranges"
    lines = [f"best: trial {best.number}, accuracy {best.values[0]:.4f}, {format_params(best.params)}"]
    if len(study.directions) > 1:
        lines.append("accuracy/time Pareto front: " + ", ".join(f"{t.number} ({t.values[0]:.3f}, {t.values[1]:.1f} s)" for t in pareto_trials(study)))
    lines += [
        f"see it:    batchlr show {shlex.quote(study.study_name)}{storage_option}",
        f"export it: batchlr export {shlex.quote(study.study_name)}{storage_option} --output best.json",
        f"browse it: batchlr dashboard{storage_option}",
    ]
    return "\n".join(lines)
