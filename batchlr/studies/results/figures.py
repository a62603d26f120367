"""The report's figures, each about one question of batch size and learning rate, as
:class:`~batchlr.studies.results.plotting.Figure` records drawn by :mod:`batchlr.studies.results.plotting`.

Each function raises ValueError, with the reason, when the study has too little to draw it. The
figures of one probe's result (lr-find, noise-scale) are in :mod:`batchlr.studies.results.probe_figures`.
"""

from __future__ import annotations

import math
import statistics

import optuna
from optuna.trial import FrozenTrial, TrialState

from batchlr.objectives.trial_record import TrialRecord
from batchlr.studies.results.plotting import GREY, OKABE_ITO, Figure, Series
from batchlr.studies.store.spec import StudySpec
from batchlr.studies.store.summary import top_trials

CURVE_TRIALS = 5
PRUNED_CURVES = 20
SPREAD_TRIALS = 10
SPREAD_MARGIN = 0.1


def trained_lr(trial: FrozenTrial) -> float:
    """The lr the trial trained with (after any scaling with its batch size)."""
    lr = TrialRecord.from_trial(trial).lr
    return float(trial.params.get("lr", math.nan) if lr is None else lr)


def _last_value(trial: FrozenTrial) -> float | None:
    """A complete trial's accuracy, a pruned one's last report."""
    if trial.state == TrialState.COMPLETE:
        value: float = trial.values[0]  # FrozenTrial.values is an untyped property
        return value
    return (
        trial.intermediate_values[max(trial.intermediate_values)]
        if trial.intermediate_values
        else None
    )


def trials_in(study: optuna.Study, *states: TrialState) -> list[FrozenTrial]:
    return [
        trial
        for trial in study.get_trials(deepcopy=False, states=states)
        if "batch_size" in trial.params
    ]


def learning_curves(study: optuna.Study, spec: StudySpec) -> Figure:
    """(b) The fold-mean validation accuracy after each round of the best trials, with the range
    of their folds, and of pruned trials in grey."""
    top = [trial for trial in top_trials(study, CURVE_TRIALS) if trial.intermediate_values]
    if not top:
        raise ValueError(
            "no complete trial reported per round (two-objective studies do not report)"
        )
    series = []
    for trial in trials_in(study, TrialState.PRUNED)[-PRUNED_CURVES:]:
        rounds = sorted(trial.intermediate_values)
        series.append(
            Series(
                "line",
                [r + 1 for r in rounds],
                [trial.intermediate_values[r] for r in rounds],
                color=GREY,
            )
        )
    for index, trial in enumerate(top):
        colour = OKABE_ITO[index % len(OKABE_ITO)]
        curves = TrialRecord.from_trial(trial).fold_curves
        if curves:
            rounds = list(range(1, len(curves) + 1))
            series.append(
                Series(
                    "band",
                    rounds,
                    [min(scores) for scores in curves],
                    color=colour,
                    y_high=[max(scores) for scores in curves],
                )
            )
        rounds = sorted(trial.intermediate_values)
        series.append(
            Series(
                "line",
                [r + 1 for r in rounds],
                [trial.intermediate_values[r] for r in rounds],
                f"trial {trial.number} (batch {trial.params['batch_size']})",
                colour,
            )
        )
    unit = "epoch" if spec.training.budget.kind == "epochs" else "round (a tenth of the steps)"
    caption = "lines: mean over folds; bands: their range; grey: pruned trials"
    return Figure(
        "Learning curves of the best trials", unit, "validation accuracy", series, caption=caption
    )


def accuracy_over_time(study: optuna.Study, spec: StudySpec) -> Figure:
    """(c) Accuracy against training seconds, coloured by batch size, with the Pareto front."""
    timed = [
        (trial, train_seconds)
        for trial in trials_in(study, TrialState.COMPLETE)
        if (train_seconds := TrialRecord.from_trial(trial).train_seconds) is not None
    ]
    seconds = {trial.number: train_seconds for trial, train_seconds in timed}
    complete = [trial for trial, _ in timed]
    if not complete:
        raise ValueError("no complete trial with its training seconds")
    front, best_so_far = [], -math.inf
    for trial in sorted(complete, key=lambda t: seconds[t.number]):
        if trial.values[0] > best_so_far:
            front.append(trial)
            best_so_far = trial.values[0]
    return Figure(
        "Accuracy over training time",
        "training seconds",
        "CV accuracy",
        [
            Series(
                "points",
                [seconds[t.number] for t in complete],
                [t.values[0] for t in complete],
                values=[math.log2(t.params["batch_size"]) for t in complete],
                value_label="batch size",
                value_ticks=_powers_of_two([t.params["batch_size"] for t in complete]),
                size=9,
                hover=[f"trial {t.number}: batch {t.params['batch_size']}" for t in complete],
            ),
            Series(
                "line",
                [seconds[t.number] for t in front],
                [t.values[0] for t in front],
                "Pareto front (nothing faster is as accurate)",
                OKABE_ITO[3],
            ),
        ],
        x_log=True,
    )


def _powers_of_two(sizes: list[int]) -> list[tuple[float, str]]:
    """Colour-bar labels for log2 batch sizes: the powers of two among them, named as sizes."""
    return [
        (float(power), str(2**power))
        for power in range(math.ceil(math.log2(min(sizes))), math.floor(math.log2(max(sizes))) + 1)
    ]


def fold_spread(study: optuna.Study, spec: StudySpec) -> Figure:
    """(d) Each fold's score of the best trials (those within :data:`SPREAD_MARGIN` of the best,
    so that a failed trial does not flatten the others' spread), and their mean."""
    ranked = top_trials(study, SPREAD_TRIALS)
    scores = {trial.number: TrialRecord.from_trial(trial).fold_scores or [] for trial in ranked}
    top = (
        [
            trial
            for trial in ranked
            if scores[trial.number] and trial.values[0] >= ranked[0].values[0] - SPREAD_MARGIN
        ]
        if ranked
        else []
    )
    if not top:
        raise ValueError("no complete trial with fold scores")
    labels = [f"trial {trial.number}" for trial in top]
    folds = [
        (label, score)
        for label, trial in zip(labels, top, strict=True)
        for score in scores[trial.number]
    ]
    return Figure(
        "Fold scores of the best trials",
        "",
        "validation accuracy",
        [
            Series(
                "points",
                [label for label, _ in folds],
                [score for _, score in folds],
                "a fold",
                OKABE_ITO[0],
                size=6,
            ),
            Series(
                "points",
                labels,
                [statistics.fmean(scores[trial.number]) for trial in top],
                "mean",
                OKABE_ITO[7],
                marker="dash",
                size=18,
            ),
        ],
        categories=labels,
    )


def best_so_far(study: optuna.Study, spec: StudySpec) -> Figure:
    """(e) Every trial's accuracy in the order run (a pruned one's last report), and the best so far."""
    trials = [
        trial
        for trial in trials_in(study, TrialState.COMPLETE, TrialState.PRUNED)
        if _last_value(trial) is not None
    ]
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    if not complete:
        raise ValueError("no complete trial")
    pruned = [trial for trial in trials if trial.state == TrialState.PRUNED]
    best, running = [], -math.inf
    for trial in sorted(complete, key=lambda t: t.number):
        running = max(running, trial.values[0])
        best.append(running)
    return Figure(
        "Search progress",
        "trial",
        "CV accuracy",
        [
            Series(
                "points",
                [t.number for t in pruned],
                [value for t in pruned if (value := _last_value(t)) is not None],  # all of them
                "pruned (last report)",
                GREY,
                marker="x",
            ),
            Series(
                "points",
                [t.number for t in complete],
                [t.values[0] for t in complete],
                "complete",
                OKABE_ITO[0],
            ),
            Series(
                "line",
                [t.number for t in sorted(complete, key=lambda t: t.number)],
                best,
                "best so far",
                OKABE_ITO[3],
            ),
        ],
    )


def accuracy_by_optimizer(study: optuna.Study, spec: StudySpec) -> Figure:
    """(f) The accuracy of every complete trial, grouped by optimizer, with each group's best."""
    complete = trials_in(study, TrialState.COMPLETE)
    names = sorted({str(trial.params.get("optimizer")) for trial in complete})
    if not names:
        raise ValueError("no complete trial")
    best = {
        name: max(t.values[0] for t in complete if t.params.get("optimizer") == name)
        for name in names
    }
    return Figure(
        "Accuracy by optimizer",
        "",
        "CV accuracy",
        [
            Series(
                "points",
                [str(t.params.get("optimizer")) for t in complete],
                [t.values[0] for t in complete],
                "a trial",
                OKABE_ITO[0],
            ),
            Series(
                "points",
                names,
                [best[name] for name in names],
                "best",
                OKABE_ITO[3],
                marker="diamond",
                size=10,
            ),
        ],
        categories=names,
    )
