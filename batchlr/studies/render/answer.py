"""The lines of what a study answers beyond its best trial: the fitted lr ridge per optimizer, the
near-optimal band, and the batch size to take on a device."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchlr.studies.results import Band, RidgeFit, StudyAnswer
    from batchlr.studies.results.recommend import Recommendation

SCALING_RULES = (("linear", 1.0), ("square-root", 0.5), ("no", 0.0))
"""The exponents a fitted ridge is held against: SGD's textbook rule, the adaptive optimizers',
and a best lr that does not move with the batch size."""


def answer(study: StudyAnswer) -> list[str]:
    """What ``batchlr show`` prints under the best trials: a ridge line per optimizer, then the band."""
    lines = ["", "best lr over batch size, fitted per optimizer:"]
    lines += [f"  {ridge_line(fit)}" for fit in study.ridges.values()]
    if study.band is not None:
        lines += band_lines(study.band)
    return lines


def ridge_line(fit: RidgeFit) -> str:
    """E.g. ``sgd: lr* = 0.031 (B/64)^0.94 [0.78, 1.10], 23 trials at batch 16 to 256: linear
    scaling holds``, or why there is no fit."""
    ridge = fit.ridge
    if ridge is None:
        return f"{fit.optimizer}: no fit: {fit.reason}"
    low, high = ridge.alpha_interval
    held = [name for name, exponent in SCALING_RULES if low <= exponent <= high]
    if len(held) == 1:
        verdict = f"{held[0]} scaling holds"
    elif held:
        verdict = (
            f"{', '.join(held[:-1])} and {held[-1]} scaling {'both' if len(held) == 2 else 'all'} "
            "fit: the trials cannot tell them apart"
        )
    else:
        verdict = f"the lr scales as B^{ridge.alpha:.2f}, unlike linear or square-root scaling"
    first, last = ridge.batch_range
    return f"{ridge.describe()} at batch {first} to {last}: {verdict}"


def band_lines(band: Band) -> list[str]:
    """The band's size, best trial and batch range, then per optimizer the lr range at each
    of its batch sizes."""
    first, last = band.batch_range
    count = len(band.members)
    lines = [
        f"near-optimal band: {count} trial{'s' if count != 1 else ''} the folds cannot tell from "
        f"the best (trial {band.best_trial}), batch {_span(first, last, 'd')}"
    ]
    for optimizer, ranges in band.lr_ranges.items():
        spans = "; ".join(
            f"{batch}: {_span(low, high, '.2g')}" for batch, (low, high) in ranges.items()
        )
        lines.append(f"  {optimizer} lr at batch {spans}")
    return lines


def _span(low: float, high: float, spec: str) -> str:
    """``low to high`` in format ``spec``, or one number where both read the same."""
    shown = format(low, spec), format(high, spec)
    return shown[0] if shown[0] == shown[1] else f"{shown[0]} to {shown[1]}"


def throughput(result: Recommendation) -> list[str]:
    """What ``batchlr throughput`` prints: a row per optimizer and batch size of the band,
    then the recommendation and the rule of its lr."""
    lines = [
        f"on {result.device} ({result.precision}), to the band's accuracy {result.target_accuracy:.4f}:",
        f"{'optimizer':<9}  {'batch':>6}  {'images/s':>9}  {'epochs':>6}  {'seconds':>8}  {'lr':>9}",
    ]
    for timing in result.timings:
        speed = "no fit" if timing.images_per_second is None else f"{timing.images_per_second:.0f}"
        epochs = "-" if timing.epochs_to_target is None else f"{timing.epochs_to_target:.1f}"
        seconds = "-" if timing.seconds_to_target is None else f"{timing.seconds_to_target:.1f}"
        lines.append(
            f"{timing.optimizer:<9}  {timing.batch_size:>6}  {speed:>9}  {epochs:>6}  "
            f"{seconds:>8}  {timing.lr.lr:>9.3g}"
        )
    best = result.best
    if best is None:
        lines.append("no batch size of the band could be timed on this device")
        return lines
    lines.append(
        f"recommended: {best.optimizer} at batch {best.batch_size}, lr {best.lr.lr:.3g} ({best.lr.rule})"
    )
    if best.lr.warning:
        lines.append(f"warning: {best.lr.warning}")
    return lines
