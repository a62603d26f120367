"""The near-optimal band: the trials whose accuracy the folds cannot tell from the best's."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from optuna.trial import FrozenTrial

from batchlr.rules import RecordReader, is_whole_number, positive_finite, positive_whole
from batchlr.search.space import SearchSpace
from batchlr.studies.results.scored_trials import scored_trials
from batchlr.studies.store.summary import standard_error

TIE_TOLERANCE = 1e-9
"""Mean fold differences this small count as ties, so that equal fold scores stay in the band."""


@dataclasses.dataclass(frozen=True)
class Band:
    """The trials whose accuracy the folds cannot tell from the best trial's.

    ``members`` holds trial numbers, the best included: a band of the best alone says that
    it is clearly ahead of every other trial. ``lr_ranges`` gives per optimizer and batch
    size the lowest and highest lr its members trained with (lrs of different optimizers
    are not comparable).
    """

    best_trial: int
    members: tuple[int, ...]
    batch_range: tuple[int, int]
    lr_ranges: dict[str, dict[int, tuple[float, float]]]

    def to_record(self) -> dict[str, Any]:
        """The band as JSON values; the lr ranges as a list, since JSON keys are strings."""
        return {
            "best_trial": self.best_trial,
            "members": list(self.members),
            "batch_range": list(self.batch_range),
            "lr_ranges": [
                {"optimizer": optimizer, "batch_size": batch, "lr": list(lrs)}
                for optimizer, ranges in self.lr_ranges.items()
                for batch, lrs in ranges.items()
            ],
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Band:
        """The band of :meth:`to_record`'s ``record``.

        Raises:
            BatchlrError: naming the first key that is missing or holds a value of a wrong type.
        """
        read = RecordReader("band", record)
        members = read(
            "members", lambda value: isinstance(value, list) and all(map(is_whole_number, value))
        )
        lr_ranges: dict[str, dict[int, tuple[float, float]]] = {}
        for entry in read("lr_ranges", lambda value: isinstance(value, list)):
            item = RecordReader("band lr_ranges entry", entry)
            ranges = lr_ranges.setdefault(
                item("optimizer", lambda value: isinstance(value, str)), {}
            )
            ranges[item("batch_size", positive_whole)] = item.pair("lr", positive_finite, float)
        return cls(
            best_trial=read("best_trial", is_whole_number),
            members=tuple(members),
            batch_range=read.pair("batch_range", positive_whole, int),
            lr_ranges=lr_ranges,
        )


def near_optimal_band(
    trials: Sequence[FrozenTrial], space: SearchSpace | None = None
) -> Band | None:
    """The complete trials whose fold scores the folds cannot tell from the best trial's;
    None while no complete trial has finite fold scores.

    The trials of a study share their folds, so the test is paired: with ``d`` the best
    trial's fold scores less a trial's, fold by fold, the trial is in the band when
    ``mean(d) <= std(d, ddof=1) / sqrt(k) + TIE_TOLERANCE`` over the ``k`` folds. The
    tolerance keeps trials with the best's very fold scores in, whose standard error is 0;
    with one fold there is no standard error and only such ties join. A trial with a nan fold
    score (a diverged fold) or another number of folds is out.

    Raises:
        BatchlrError: for a complete trial whose params are not those of ``space``.
    """
    scored = [trial for trial in scored_trials(trials, space) if trial.fold_scores]
    finite = [trial for trial in scored if all(map(math.isfinite, trial.fold_scores))]
    if not finite:
        return None
    best = max(finite, key=lambda trial: (trial.value, -trial.number))
    members = []
    for trial in finite:
        if len(trial.fold_scores) != len(best.fold_scores):
            continue
        diffs = [
            ours - theirs for ours, theirs in zip(best.fold_scores, trial.fold_scores, strict=True)
        ]
        error = standard_error(diffs)
        if sum(diffs) / len(diffs) <= (0.0 if math.isnan(error) else error) + TIE_TOLERANCE:
            members.append(trial)
    lr_ranges: dict[str, dict[int, tuple[float, float]]] = {}
    for trial in members:
        ranges = lr_ranges.setdefault(trial.optimizer, {})
        low, high = ranges.get(trial.batch_size, (trial.lr, trial.lr))
        ranges[trial.batch_size] = (min(low, trial.lr), max(high, trial.lr))
    batches = [trial.batch_size for trial in members]
    return Band(
        best_trial=best.number,
        members=tuple(sorted(trial.number for trial in members)),
        batch_range=(min(batches), max(batches)),
        lr_ranges={name: dict(sorted(ranges.items())) for name, ranges in lr_ranges.items()},
    )
