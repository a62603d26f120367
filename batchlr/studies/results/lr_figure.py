"""Figure (a) of the report: the learning rate over the batch size, with what the study fitted
(each optimizer's ridge) and found equally good (the near-optimal band)."""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from batchlr.studies.results.answer import study_answer
from batchlr.studies.results.figures import trained_lr, trials_in
from batchlr.studies.results.plotting import GREY, OKABE_ITO, Figure, Series
from batchlr.studies.store.spec import StudySpec


def lr_over_batch_size(study: optuna.Study, spec: StudySpec) -> Figure:
    """(a) Every trial's lr and batch size coloured by accuracy (pruned ones as crosses), the
    fitted ridge of each optimizer, the near-optimal band's trials (diamonds) and lr range, and
    the linear and square-root scaling rules through the best trial."""
    complete, pruned = trials_in(study, TrialState.COMPLETE), trials_in(study, TrialState.PRUNED)
    if not complete:
        raise ValueError("no complete trial")
    best = max(complete, key=lambda trial: trial.values[0])
    series = []
    if pruned:  # no legend entry for trials the study does not have
        series.append(_trial_points(pruned, "pruned", color=GREY, marker="x"))
    series.append(
        _trial_points(
            complete,
            "complete",
            values=[t.values[0] for t in complete],
            value_label="CV accuracy",
            size=9,
            hover=[f"trial {t.number}: {t.values[0]:.4f}" for t in complete],
        )
    )
    series += _ridges_and_band(study)
    low, high = spec.space.batch_size
    sizes = [low * (high / low) ** (index / 20) for index in range(21)]
    best_size, best_lr = best.params["batch_size"], trained_lr(best)
    series.append(
        Series(
            "line",
            sizes,
            [best_lr * size / best_size for size in sizes],
            "linear scaling through the best",
            OKABE_ITO[1],
            dash=True,
        )
    )
    series.append(
        Series(
            "line",
            sizes,
            [best_lr * math.sqrt(size / best_size) for size in sizes],
            "square-root scaling through the best",
            OKABE_ITO[2],
            dash=True,
        )
    )
    return Figure(
        "Learning rate over batch size",
        "batch size",
        "learning rate (as trained)",
        series,
        x_log=True,
        y_log=True,
        x_whole=True,
    )


def _ridges_and_band(study: optuna.Study) -> list[Series]:
    """Each optimizer's fitted ridge over the batch sizes it was fitted on, and the band: its
    lr range at each of its batch sizes, and its trials."""
    answer = study_answer(study)
    series = []
    for index, fit in enumerate(answer.ridges.values()):
        if fit.ridge is not None:
            low, high = fit.ridge.batch_range
            sizes = [low * (high / low) ** (step / 20) for step in range(21)]
            series.append(
                Series(
                    "line",
                    sizes,
                    [fit.ridge.lr(size) for size in sizes],
                    f"{fit.optimizer} ridge: lr ~ B^{fit.ridge.alpha:.2f}",
                    OKABE_ITO[(3 + index) % len(OKABE_ITO)],
                )
            )
    if answer.band is None:
        return series
    for optimizer, ranges in answer.band.lr_ranges.items():
        if len(ranges) > 1:
            lows, highs = zip(*ranges.values(), strict=True)
            series.append(
                Series("band", list(ranges), lows, f"{optimizer} near-optimal band", y_high=highs)
            )
    members = [
        trial
        for trial in trials_in(study, TrialState.COMPLETE)
        if trial.number in answer.band.members
    ]
    series.append(
        _trial_points(members, "near-optimal trials", color=OKABE_ITO[5], marker="diamond", size=11)
    )
    return series


def _trial_points(trials: list[FrozenTrial], name: str, **style: Any) -> Series:
    """``trials`` as points at their batch size and lr as trained."""
    return Series(
        "points",
        [trial.params["batch_size"] for trial in trials],
        [trained_lr(trial) for trial in trials],
        name,
        **style,
    )
