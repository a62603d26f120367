"""The ridge of the best learning rate over batch size, fitted per optimizer: what a study
reports (``batchlr show``, exports) and what the ridge sampler proposes learning rates from.

A :class:`Ridge` is the power law ``lr*(B) = lr_ref (B / B_ref) ** alpha`` fitted to a study's
trials (see :func:`fit_ridges`); theory expects ``alpha`` near 1 for SGD below the noise scale
and near 0.5 for adaptive optimizers (``../shared/notes/batch-size-science.md``). It reads back
from the plain record it exports, since exported files are read again.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from batchlr.rules import RecordReader, finite, positive_finite, positive_whole
from batchlr.search.lr_scaling import ADAPTIVE_OPTIMIZERS

MIN_BATCH_GROUPS = 3
MIN_LEARNED_TRIALS = 6
LEARNED_MARGIN = 0.1
"""A trial learned when its accuracy is this fraction of the way from chance to 1 above chance."""
CONFIDENCE = 0.95

# Batch sizes less than this factor apart share a group: a random search draws nearly every
# batch size once, and one trial per batch size says nothing about which lr is best there.
_GROUP_RATIO = math.sqrt(2.0)


@dataclasses.dataclass(frozen=True)
class ScoredTrial:
    """A trial as the fits see it: its optimizer, batch size, the lr it trained with (after
    any scaling rule; the ridge sampler gives the effective lr, lr / (1 - momentum)), its
    cross-validated accuracy (the ridge sampler's: at one round, pruned trials included) and
    its fold scores."""

    number: int
    optimizer: str
    batch_size: int
    lr: float
    value: float
    fold_scores: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Ridge:
    """The fitted power law ``lr*(B) = lr_at_reference * (B / reference_batch) ** alpha``.

    ``alpha_interval`` is the 95 % interval of ``alpha`` (Student's t on the fit's standard
    error, see :func:`fit_ridges`); ``trials`` counts the trials
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
        read = RecordReader("ridge", record)
        return cls(
            optimizer=read("optimizer", lambda value: isinstance(value, str)),
            reference_batch=read("reference_batch", positive_whole),
            lr_at_reference=float(read("lr_at_reference", positive_finite)),
            alpha=float(read("alpha", finite)),
            alpha_interval=read.pair("alpha_interval", finite, float),
            trials=read("trials", positive_whole),
            batch_range=read.pair("batch_range", positive_whole, int),
            batch_sizes=read("batch_sizes", positive_whole),
            surge_peak=read("surge_peak", lambda value: value is None or positive_whole(value)),
        )


@dataclasses.dataclass(frozen=True)
class RidgeFit:
    """One optimizer's fit: its ``ridge``, or None and the one-line ``reason`` it has none."""

    optimizer: str
    ridge: Ridge | None
    reason: str | None = None


def fit_ridges(trials: Sequence[ScoredTrial], chance: float | None = None) -> dict[str, RidgeFit]:
    """Fit ``log lr*(B) = a + alpha log B`` per optimizer from ``trials``.

    Method:
        1. Keep the trials that learned: accuracy above ``chance + LEARNED_MARGIN * (1 -
           chance)``, ``chance`` being 1 / classes; without ``chance``, accuracy at least the
           midpoint between the optimizer's worst and best (which keeps half of a study
           where nothing learned: give ``chance`` where it is known).
        2. Group batch sizes less than a factor sqrt(2) apart (smallest first). A group's
           point is its best trial's batch size and lr; where trials at that batch size hold
           a lower and a higher lr, the lr moves to the top of the least-squares parabola of
           accuracy over log lr through the best lr and up to two lrs either side, kept
           between them: a grid's best lr is otherwise off by up to half its lr step.
        3. Weighted least squares of log lr over log batch size, each group weighted by its
           number of trials, since its best lr is located more closely among more trials.
           ``alpha_interval`` is the :data:`CONFIDENCE` interval of the slope from the fit's
           standard error and Student's t: it says how well the groups' best lrs lie on one
           line. (A bootstrap over trials, tried first, drops a grid's best lrs and spreads
           the interval over the grid's step rather than the fit's error.)
        4. Adaptive optimizers (:data:`ADAPTIVE_OPTIMIZERS`) with at least four groups surge
           when a weighted quadratic over log-log peaks strictly inside the groups, with two
           groups at or below the peak and one above, and its curvature stays below zero
           across its own :data:`CONFIDENCE` interval. Their power law is then fitted at and
           below the peak.

    The reference batch is the geometric mean of the fitted batch sizes, rounded to a power
    of two.

    Args:
        trials: A study's complete trials (or, for the ridge sampler, its scored ones), with a
            finite accuracy.
        chance: The accuracy of guessing (1 / classes), or None where unknown.

    Returns:
        A fit per optimizer with a complete trial. Its ``ridge`` is None, with the ``reason``,
        for fewer than :data:`MIN_BATCH_GROUPS` groups or :data:`MIN_LEARNED_TRIALS` trials
        that learned.
    """
    complete = sorted(trials, key=lambda trial: (trial.batch_size, trial.lr, trial.number))
    fits = {}
    for optimizer in dict.fromkeys(trial.optimizer for trial in complete):
        own = [trial for trial in complete if trial.optimizer == optimizer]
        if chance is None:
            values = [trial.value for trial in own]
            learned = [trial for trial in own if trial.value >= (min(values) + max(values)) / 2]
        else:
            threshold = chance + LEARNED_MARGIN * (1 - chance)
            learned = [trial for trial in own if trial.value > threshold]
        fits[optimizer] = _fit(optimizer, learned)
    return fits


def _fit(optimizer: str, learned: list[ScoredTrial]) -> RidgeFit:
    points = _points(learned)
    for needed, what, present in (
        (
            MIN_BATCH_GROUPS,
            "trials that learned at {} batch sizes (less than a factor 1.41 apart count as one)",
            len(points),
        ),
        (MIN_LEARNED_TRIALS, "{} trials that learned", len(learned)),
    ):
        if present < needed:
            reason = f"it needs {what.format(needed)}, this study has {present}"
            return RidgeFit(optimizer, None, reason)
    peak = _surge_peak(points) if optimizer in ADAPTIVE_OPTIMIZERS else None
    # A hair above the peak, so that a group's batch size at the peak itself stays below it.
    fitted = [point for point in points if peak is None or point[0] <= peak * (1 + 1e-9)]
    (alpha, intercept), (spread, _) = _weighted_fit(fitted, 1)
    batches = [point[0] for point in fitted]
    reference = 2 ** round(float(np.mean(np.log2(batches))))
    ridge = Ridge(
        optimizer=optimizer,
        reference_batch=reference,
        lr_at_reference=math.exp(intercept + alpha * math.log(reference)),
        alpha=alpha,
        alpha_interval=(alpha - spread, alpha + spread),
        trials=sum(point[2] for point in fitted),
        batch_range=(min(batches), max(batches)),
        batch_sizes=len(fitted),
        surge_peak=None if peak is None else round(peak),
    )
    return RidgeFit(optimizer, ridge)


_Point = tuple[int, float, int]
"""A batch-size group's batch size, best lr and number of trials."""


def _points(learned: list[ScoredTrial]) -> list[_Point]:
    """Each batch-size group's point, smallest batch size first (see :func:`fit_ridges`)."""
    groups: list[list[ScoredTrial]] = []
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


def _weighted_fit(points: list[_Point], degree: int) -> tuple[list[float], list[float]]:
    """Coefficients of log lr over log batch size, highest power first, weighted by trials,
    and the half-width of each one's :data:`CONFIDENCE` interval (0 where the points fit
    exactly, nan with no degree of freedom left)."""
    x = np.log([point[0] for point in points])
    y = np.log([point[1] for point in points])
    weights = np.sqrt([point[2] for point in points])  # polyfit weights residuals, not squares
    freedom = len(points) - degree - 1
    if freedom < 1:
        coefficients = np.polyfit(x, y, degree, w=weights)
        return [float(value) for value in coefficients], [math.nan] * (degree + 1)
    import scipy.stats  # here: exports read a ridge back without paying for scipy's import

    coefficients, covariance = np.polyfit(x, y, degree, w=weights, cov=True)
    quantile = float(scipy.stats.t.ppf((1 + CONFIDENCE) / 2, freedom))
    spreads = quantile * np.sqrt(np.clip(np.diag(covariance), 0, None))
    return [float(value) for value in coefficients], [float(value) for value in spreads]


def _surge_peak(points: list[_Point]) -> float | None:
    """The batch size at the top of the weighted quadratic, where the best lr surges: a top
    strictly inside the groups, two groups at or below it and one above, and a curvature
    below zero across its interval."""
    if len(points) < 4:
        return None
    (curvature, slope, _), (spread, *_) = _weighted_fit(points, 2)
    if not curvature + spread < 0:
        return None
    peak = math.exp(-slope / (2 * curvature))
    rising = sum(point[0] <= peak for point in points)
    return peak if 2 <= rising < len(points) else None
