"""The ridge of the best learning rate over batch size, and the band of near-optimal trials.

A :class:`Ridge` is the power law ``lr*(B) = lr_ref (B / B_ref) ** alpha`` fitted per optimizer to
a study's trials (see :func:`fit_ridges`); theory expects ``alpha`` near 1 for SGD below the
noise scale and near 0.5 for adaptive optimizers (``../shared/notes/batch-size-science.md``).
A :class:`Band` is the set of trials whose cross-validated accuracy the folds cannot tell from
the best trial's (see :func:`near_optimal_band`). Both read back from the plain records they
export, since exported files are read again.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from batchlr.errors import BatchlrError
from batchlr.objectives.trial_record import TrialRecord
from batchlr.search.space import Hyperparameters, SearchSpace, is_real, is_whole_number
from batchlr.studies.store.summary import standard_error

ADAPTIVE_OPTIMIZERS: frozenset[str] = frozenset({"adam", "rmsprop", "adamw"})
"""Optimizers whose best lr may surge: rise with the batch size, then fall (Li et al. 2024)."""

MIN_BATCH_GROUPS = 3
MIN_LEARNED_TRIALS = 6
LEARNED_MARGIN = 0.1
"""A trial learned when its accuracy is this fraction of the way from chance to 1 above chance."""
BOOTSTRAP_RESAMPLES = 200
TIE_TOLERANCE = 1e-9
"""Mean fold differences this small count as ties, so that equal fold scores stay in the band."""

# Batch sizes less than this factor apart share a group: a random search draws nearly every
# batch size once, and one trial per batch size says nothing about which lr is best there.
_GROUP_RATIO = math.sqrt(2.0)


@dataclasses.dataclass(frozen=True)
class Ridge:
    """The fitted power law ``lr*(B) = lr_at_reference * (B / reference_batch) ** alpha``.

    ``alpha_interval`` is the bootstrap 95 % interval of ``alpha``; ``trials`` counts the trials
    that learned in the fitted batch-size groups, ``batch_sizes`` the groups and
    ``batch_range`` their batch sizes' ends. Where the best lr surges, ``surge_peak`` is the
    batch size at its peak and the power law is fitted at and below it only.
    """

    optimizer: str
    reference_batch: int
    lr_at_reference: float
    alpha: float
    alpha_interval: tuple[float, float]
    trials: int
    batch_range: tuple[int, int]
    batch_sizes: int
    surge_peak: int | None = None

    def lr(self, batch_size: float) -> float:
        """The power law's lr at ``batch_size``, also outside ``batch_range``."""
        return float(self.lr_at_reference * (batch_size / self.reference_batch) ** self.alpha)

    def describe(self) -> str:
        """One line, like ``sgd: lr* = 0.031 (B/64)^0.94 [0.78, 1.10], 23 trials``."""
        low, high = self.alpha_interval
        surge = "" if self.surge_peak is None else f", surges to a peak at B = {self.surge_peak}"
        return (
            f"{self.optimizer}: lr* = {self.lr_at_reference:.2g} (B/{self.reference_batch})"
            f"^{self.alpha:.2f} [{low:.2f}, {high:.2f}], {self.trials} trials{surge}"
        )

    def to_record(self) -> dict[str, Any]:
        """The ridge as JSON values, every field by name (tuples as lists, ``surge_peak`` null
        where none)."""
        record = dataclasses.asdict(self)
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in record.items()
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Ridge:
        """The ridge of :meth:`to_record`'s ``record``.

        Raises:
            BatchlrError: naming the first key that is missing or holds a value of a wrong type.
        """
        read = _Reader("ridge", record)
        return cls(
            optimizer=read("optimizer", lambda value: isinstance(value, str)),
            reference_batch=read("reference_batch", _positive_whole),
            lr_at_reference=float(read("lr_at_reference", _positive_finite)),
            alpha=float(read("alpha", _finite)),
            alpha_interval=read.pair("alpha_interval", _finite, float),
            trials=read("trials", _positive_whole),
            batch_range=read.pair("batch_range", _positive_whole, int),
            batch_sizes=read("batch_sizes", _positive_whole),
            surge_peak=read("surge_peak", lambda value: value is None or _positive_whole(value)),
        )


@dataclasses.dataclass(frozen=True)
class RidgeFit:
    """One optimizer's fit: its ``ridge``, or None and the one-line ``reason`` it has none."""

    optimizer: str
    ridge: Ridge | None
    reason: str | None = None


@dataclasses.dataclass(frozen=True)
class _Trial:
    number: int
    optimizer: str
    batch_size: int
    lr: float
    value: float
    fold_scores: tuple[float, ...]


def _complete_trials(trials: Sequence[FrozenTrial], space: SearchSpace | None) -> list[_Trial]:
    """The complete trials with a finite accuracy, each with the lr it trained with."""
    read = []
    for trial in trials:
        if trial.state != TrialState.COMPLETE or not math.isfinite(trial.values[0]):
            continue
        record = TrialRecord.from_trial(trial)
        drawn = Hyperparameters.from_params(trial.params, space)
        lr = drawn.lr if record.lr is None else record.lr
        scores = tuple(record.fold_scores or ())
        read.append(
            _Trial(trial.number, drawn.optimizer, drawn.batch_size, lr, trial.values[0], scores)
        )
    return sorted(read, key=lambda trial: (trial.batch_size, trial.lr, trial.number))


def fit_ridges(
    trials: Sequence[FrozenTrial],
    chance: float | None = None,
    seed: int = 0,
    space: SearchSpace | None = None,
) -> dict[str, RidgeFit]:
    """Fit ``log lr*(B) = a + alpha log B`` per optimizer from the complete ``trials``.

    Method:
        1. Keep the trials that learned: accuracy above ``chance + LEARNED_MARGIN * (1 -
           chance)``, ``chance`` being 1 / classes; without ``chance``, accuracy at least the
           midpoint between the optimizer's worst and best (which keeps half of a study
           where nothing learned: give ``chance`` where it is known).
        2. Group batch sizes less than a factor sqrt(2) apart (smallest first). A group's
           point is its best trial's batch size and lr; where trials at that batch size hold
           a lower and a higher lr, the lr moves to the top of the least-squares parabola of
           accuracy over log lr through the best lr and up to two lrs either side, kept
           between them (two, so that a resample that lacks one lr still finds the top).
        3. Weighted least squares of log lr over log batch size, each group weighted by its
           number of trials, since its best lr is located more closely among more trials.
        4. ``alpha_interval``: the 2.5 and 97.5 percentiles of ``alpha`` over
           :data:`BOOTSTRAP_RESAMPLES` refits of trials resampled with replacement, drawn by
           ``numpy.random.default_rng(seed)`` afresh for each optimizer.
        5. Adaptive optimizers (:data:`ADAPTIVE_OPTIMIZERS`) with at least four groups surge
           when a weighted quadratic over log-log peaks strictly inside the groups, with two
           groups at or below the peak and one above, and its curvature is below zero in
           97.5 % of the resamples. Their power law is then fitted at and below the peak.

    The reference batch is the geometric mean of the fitted batch sizes, rounded to a power
    of two.

    Args:
        trials: A study's trials; those not complete are left out.
        chance: The accuracy of guessing (1 / classes), or None where unknown.
        seed: Seeds the bootstrap, so that a fit repeats exactly.
        space: The space the study searched, so that params read right under an lr scaling rule.

    Returns:
        A fit per optimizer with a complete trial. Its ``ridge`` is None, with the ``reason``,
        for fewer than :data:`MIN_BATCH_GROUPS` groups or :data:`MIN_LEARNED_TRIALS` trials
        that learned.

    Raises:
        BatchlrError: for a complete trial whose params are not those of ``space``.
    """
    complete = _complete_trials(trials, space)
    fits = {}
    for optimizer in dict.fromkeys(trial.optimizer for trial in complete):
        own = [trial for trial in complete if trial.optimizer == optimizer]
        if chance is None:
            values = [trial.value for trial in own]
            learned = [trial for trial in own if trial.value >= (min(values) + max(values)) / 2]
        else:
            threshold = chance + LEARNED_MARGIN * (1 - chance)
            learned = [trial for trial in own if trial.value > threshold]
        fits[optimizer] = _fit(optimizer, learned, np.random.default_rng(seed))
    return fits


def _fit(optimizer: str, learned: list[_Trial], rng: np.random.Generator) -> RidgeFit:
    points = _points(learned)
    for needed, what, present in (
        (MIN_BATCH_GROUPS, "batch sizes", len(points)),
        (MIN_LEARNED_TRIALS, "trials", len(learned)),
    ):
        if present < needed:
            reason = (
                f"{needed} {what} with trials that learned are needed, this study has {present}"
            )
            return RidgeFit(optimizer, None, reason)
    peak = _peak(points) if optimizer in ADAPTIVE_OPTIMIZERS else None
    # A hair above the peak, so that a group's batch size at the peak itself stays below it.
    limit = math.inf if peak is None else peak * (1 + 1e-9)
    every, below_peak, curvatures = [], [], []
    for _ in range(BOOTSTRAP_RESAMPLES):
        resample = _points([learned[i] for i in rng.integers(len(learned), size=len(learned))])
        below = [point for point in resample if point[0] <= limit]
        every.append(_line(resample)[1] if len(resample) >= 2 else math.nan)
        below_peak.append(_line(below)[1] if len(below) >= 2 else math.nan)
        curvatures.append(_weighted_fit(resample, 2)[0] if len(resample) >= 3 else math.nan)
    if peak is None or not np.nanpercentile(curvatures, 97.5) < 0:
        return _ridge(optimizer, points, math.inf, every, None)
    return _ridge(optimizer, points, limit, below_peak, round(peak))


def _ridge(
    optimizer: str, points: list[_Point], limit: float, alphas: list[float], peak: int | None
) -> RidgeFit:
    fitted = [point for point in points if point[0] <= limit]
    intercept, alpha = _line(fitted)
    batches = [point[0] for point in fitted]
    reference = 2 ** round(float(np.mean(np.log2(batches))))
    low, high = (float(value) for value in np.nanpercentile(alphas, [2.5, 97.5]))
    ridge = Ridge(
        optimizer=optimizer,
        reference_batch=reference,
        lr_at_reference=math.exp(intercept + alpha * math.log(reference)),
        alpha=alpha,
        alpha_interval=(low, high),
        trials=sum(point[2] for point in fitted),
        batch_range=(min(batches), max(batches)),
        batch_sizes=len(fitted),
        surge_peak=peak,
    )
    return RidgeFit(optimizer, ridge)


_Point = tuple[int, float, int]
"""A batch-size group's batch size, best lr and number of trials."""


def _points(learned: list[_Trial]) -> list[_Point]:
    """Each batch-size group's point, smallest batch size first (see :func:`fit_ridges`)."""
    groups: list[list[_Trial]] = []
    for trial in sorted(learned, key=lambda trial: (trial.batch_size, trial.lr, trial.number)):
        if groups and trial.batch_size < groups[-1][0].batch_size * _GROUP_RATIO:
            groups[-1].append(trial)
        else:
            groups.append([trial])
    points = []
    for group in groups:
        best = max(group, key=lambda trial: trial.value)
        # A resample repeats trials; the parabola wants each lr once, at its best accuracy.
        by_lr: dict[float, float] = {}
        for trial in group:
            if trial.batch_size == best.batch_size:
                by_lr[trial.lr] = max(trial.value, by_lr.get(trial.lr, -math.inf))
        lrs = sorted(by_lr)
        index = lrs.index(best.lr)
        near = lrs[max(index - 2, 0) : index + 3]
        lr = best.lr
        if near[0] < lr < near[-1]:
            x = np.log(near)
            curve = np.polyfit(x, [by_lr[value] for value in near], 2)
            if curve[0] < 0:
                lr = math.exp(float(np.clip(-curve[1] / (2 * curve[0]), x[0], x[-1])))
        points.append((best.batch_size, lr, len(group)))
    return points


def _weighted_fit(points: list[_Point], degree: int) -> np.ndarray:
    """Coefficients of log lr over log batch size, highest power first, weighted by trials."""
    x = np.log([point[0] for point in points])
    y = np.log([point[1] for point in points])
    # polyfit weights multiply residuals, so the square root weights the squares by trials
    return np.polyfit(x, y, degree, w=np.sqrt([point[2] for point in points]))


def _line(points: list[_Point]) -> tuple[float, float]:
    """The intercept and slope of the weighted least-squares line."""
    slope, intercept = _weighted_fit(points, 1)
    return float(intercept), float(slope)


def _peak(points: list[_Point]) -> float | None:
    """The batch size at the weighted quadratic's top, where it could be a surge."""
    if len(points) < 4:
        return None
    curvature, slope, _ = _weighted_fit(points, 2)
    if not curvature < 0:
        return None
    peak = math.exp(-slope / (2 * curvature))
    batches = [point[0] for point in points]
    rising = sum(batch <= peak for batch in batches)
    return peak if rising >= 2 and rising < len(batches) else None


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
        read = _Reader("band", record)
        members = read(
            "members", lambda value: isinstance(value, list) and all(map(is_whole_number, value))
        )
        lr_ranges: dict[str, dict[int, tuple[float, float]]] = {}
        for entry in read("lr_ranges", lambda value: isinstance(value, list)):
            item = _Reader("band lr_ranges entry", entry)
            ranges = lr_ranges.setdefault(
                item("optimizer", lambda value: isinstance(value, str)), {}
            )
            ranges[item("batch_size", _positive_whole)] = item.pair("lr", _positive_finite, float)
        return cls(
            best_trial=read("best_trial", is_whole_number),
            members=tuple(members),
            batch_range=read.pair("batch_range", _positive_whole, int),
            lr_ranges=lr_ranges,
        )


def near_optimal_band(trials: Sequence[FrozenTrial], space: SearchSpace | None = None) -> Band:
    """The complete trials whose fold scores the folds cannot tell from the best trial's.

    The trials of a study share their folds, so the test is paired: with ``d`` the best
    trial's fold scores less a trial's, fold by fold, the trial is in the band when
    ``mean(d) <= std(d, ddof=1) / sqrt(k) + TIE_TOLERANCE`` over the ``k`` folds. The
    tolerance keeps trials with the best's very fold scores in, whose standard error is 0;
    with one fold there is no standard error and only such ties join. A trial with a nan fold
    score (a diverged fold) or another number of folds is out.

    Raises:
        BatchlrError: when no complete trial has finite fold scores, or for a complete
            trial whose params are not those of ``space``.
    """
    scored = [trial for trial in _complete_trials(trials, space) if trial.fold_scores]
    finite = [trial for trial in scored if all(map(math.isfinite, trial.fold_scores))]
    if not finite:
        raise BatchlrError("no complete trial has finite fold scores to draw a band from")
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


def _positive_whole(value: Any) -> bool:
    return is_whole_number(value) and value >= 1


def _finite(value: Any) -> bool:
    return is_real(value) and math.isfinite(value)


def _positive_finite(value: Any) -> bool:
    return _finite(value) and value > 0


class _Reader:
    """Reads a record's keys, raising a :class:`BatchlrError` that names the first bad one."""

    def __init__(self, what: str, record: Any) -> None:
        if not isinstance(record, Mapping):
            raise BatchlrError(f"{what}: {record!r:.60} is not a JSON object")
        self.what, self.record = what, record

    def __call__(self, key: str, valid: Callable[[Any], bool]) -> Any:
        if key not in self.record:
            raise BatchlrError(f"{self.what}: key {key!r} is missing")
        value = self.record[key]
        if not valid(value):
            raise BatchlrError(f"{self.what}: key {key!r} holds {value!r:.60}, not a valid value")
        return value

    def pair(self, key: str, valid: Callable[[Any], bool], kind: type[Any]) -> tuple[Any, Any]:
        """Two valid values in order, as a list holds them in JSON."""
        value = self(key, lambda value: isinstance(value, list) and len(value) == 2)
        if not (all(map(valid, value)) and value[0] <= value[1]):
            raise BatchlrError(f"{self.what}: key {key!r} holds {value!r:.60}, not a valid range")
        return kind(value[0]), kind(value[1])
