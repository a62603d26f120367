"""The lines of what a study answers beyond its best trial: the fitted lr ridge per optimizer and
the near-optimal band."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchlr.studies.results import Band, RidgeFit, StudyAnswer

SCALING_RULES = (("linear", 1.0), ("square-root", 0.5))
"""The textbook exponents a fitted ridge is held against: SGD's and the adaptive optimizers'."""


def answer(study: StudyAnswer) -> list[str]:
    """What ``batchlr show`` prints under the best trials: a ridge line per optimizer, then the band."""
    lines = ["", "best lr over batch size, fitted per optimizer:"]
    lines += [f"  {ridge_line(fit)}" for fit in study.ridges.values()]
    if study.band is not None:
        lines += band_lines(study.band)
    return lines


def ridge_line(fit: RidgeFit) -> str:
    """E.g. ``sgd: lr* = 0.031 (B/64)^0.94 [0.78, 1.10], 23 trials: linear scaling holds from
    16 to 256``, or why there is no fit."""
    ridge = fit.ridge
    if ridge is None:
        return f"{fit.optimizer}: no fit: {fit.reason}"
    low, high = ridge.alpha_interval
    held = [name for name, exponent in SCALING_RULES if low <= exponent <= high]
    if len(held) == 1:
        verdict = f"{held[0]} scaling holds"
    elif held:
        verdict = "linear and square-root scaling both fit (too wide to choose)"
    else:
        verdict = "neither linear nor square-root scaling fits"
    first, last = ridge.batch_range
    return f"{ridge.describe()}: {verdict} from {first} to {last}"


def band_lines(band: Band) -> list[str]:
    """The band's size, best trial and batch range, then per optimizer the lr range at each
    of its batch sizes."""
    first, last = band.batch_range
    count = len(band.members)
    lines = [
        f"near-optimal band: {count} trial{'s' if count != 1 else ''} the folds cannot tell from "
        f"the best (trial {band.best_trial}), batch {first} to {last}"
    ]
    for optimizer, ranges in band.lr_ranges.items():
        spans = "; ".join(
            f"{batch}: {low:.2g}" + ("" if high == low else f" to {high:.2g}")
            for batch, (low, high) in ranges.items()
        )
        lines.append(f"  {optimizer} lr at batch {spans}")
    return lines
