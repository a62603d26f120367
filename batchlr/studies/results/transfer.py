"""The learning rate of a study's best configuration at another batch size, and the rule it
came from: the study's fitted ridge where it holds, the measured critical batch size beyond
it, or the study's ``--lr-scaling`` rule where nothing was fitted."""

from __future__ import annotations

import dataclasses
from typing import Literal

from batchlr.errors import BatchlrError
from batchlr.search.lr_scaling import ADAPTIVE_OPTIMIZERS, LrScaling
from batchlr.search.ridge import Ridge

ForcedRule = Literal["linear", "sqrt", "noise"]

UNCERTAIN_ALPHA_WIDTH = 1.0
"""The width of a ridge exponent's 95 % interval past which an lr from it comes with a warning:
wider than the step from no scaling (0) to linear scaling (1), the interval no longer says
which rule holds."""


@dataclasses.dataclass(frozen=True)
class LrRule:
    """An ``lr`` for ``batch_size``, the ``rule`` that produced it, in words, and a ``warning``
    where the rule reaches beyond what the study measured."""

    batch_size: int
    lr: float
    rule: str
    warning: str | None = None


def transfer_lr(
    best_lr: float,
    best_batch: int,
    optimizer: str,
    batch_size: int,
    ridge: Ridge | None,
    noise_scale: float | None,
    scaling: LrScaling,
    study: str,
    forced: ForcedRule | None = None,
) -> LrRule:
    """The lr for ``batch_size``, for a study whose best trial trained with ``best_lr`` at
    ``best_batch``.

    Without ``forced``: within the ridge's batch range, its fitted exponent from ``best_lr``
    (not the line's own level: the line pools trials of every momentum, while the best
    trial's lr goes with the momentum the export carries); below it, extrapolated, with a
    warning; above it, extrapolated up to the critical batch size ``noise_scale`` (or the
    range's end, if that is larger) and held past it (no noise scale: extrapolated, with a
    warning that names ``noise-scale --study``), or, for an adaptive optimizer whose best lr
    surges, up to the surge's peak and held past it as an upper bound; with no ridge, the
    study's lr scaling rule, or without one the best trial's own lr at ``best_batch`` alone.
    ``forced`` names a rule instead: ``linear``, ``sqrt``, or ``noise`` (the AdaScale gain of
    the noise scale; its square root for adaptive optimizers).

    Raises:
        BatchlrError: where no rule applies: no ridge and no scaling rule, or ``noise`` without
            a measured noise scale.
    """
    if forced in ("linear", "sqrt"):
        lr = LrScaling(forced, best_batch).lr(best_lr, batch_size, optimizer)
        return LrRule(batch_size, lr, f"{forced} scaling from batch {best_batch}, as asked")
    if forced == "noise":
        if noise_scale is None:
            raise BatchlrError(_no_noise_scale(study, "rule='noise' needs it"))
        gain = LrScaling("noise", best_batch, noise_scale)
        root = "the square root of " if optimizer in ADAPTIVE_OPTIMIZERS else ""
        return LrRule(
            batch_size,
            gain.lr(best_lr, batch_size, optimizer),
            f"{root}the AdaScale gain of the noise scale {noise_scale:.0f} from batch {best_batch}",
        )
    if ridge is None:
        if scaling.rule == "none":
            if batch_size == best_batch:
                return LrRule(batch_size, best_lr, "the best trial's own (no ridge was fitted)")
            raise BatchlrError(
                f"study {study!r} fitted no lr ridge and searched lr without a scaling rule, so "
                f"it has an lr for its best trial's batch {best_batch} only; call "
                "lr_for(batch_size, rule='linear', 'sqrt' or 'noise')"
            )
        from_best = dataclasses.replace(scaling, reference_batch_size=best_batch)
        lr = from_best.lr(best_lr, batch_size, optimizer)
        return LrRule(batch_size, lr, f"the study's {scaling.rule} scaling (no ridge was fitted)")
    low, high = ridge.batch_range
    fitted = f"the ridge lr ~ B^{ridge.alpha:.2f} fitted from {low} to {high}"
    outside = f"batch {batch_size} lies outside the fitted {low} to {high}"
    reach: float = batch_size
    if low <= batch_size <= high:
        rule, beyond = f"{fitted}, from the best trial", None
    elif batch_size < low:  # the critical batch size bounds the ridge from above only
        rule, beyond = f"{fitted}, extrapolated", outside
    elif ridge.surge_peak is not None:
        reach = min(batch_size, ridge.surge_peak)
        rule, beyond = (
            f"{fitted}, extrapolated up to its surge peak at batch {ridge.surge_peak}",
            outside,
        )
        if reach < batch_size:
            rule = f"{fitted}, held past its surge peak at batch {ridge.surge_peak}"
            beyond = f"{outside}, past the peak where the best lr falls again: an upper bound"
    elif noise_scale is None:
        rule, beyond = f"{fitted}, extrapolated", _no_noise_scale(study, outside)
    else:
        # The fit holds across its range even past a critical batch size measured inside it.
        reach = min(batch_size, max(noise_scale, high))
        rule, beyond = f"{fitted}, extrapolated", outside
        if reach < batch_size:
            rule += (
                f" and held past the critical batch size {noise_scale:.0f}"
                if noise_scale > high
                else f" and held past its end (the critical batch size {noise_scale:.0f} lies within it)"
            )
    lr = best_lr * (reach / best_batch) ** ridge.alpha
    warnings = [beyond, _uncertain(ridge, best_lr, reach / best_batch)]
    return LrRule(batch_size, lr, rule, "; ".join(filter(None, warnings)) or None)


def _uncertain(ridge: Ridge, best_lr: float, ratio: float) -> str | None:
    """A warning where the ridge's exponent is too uncertain to say which rule holds, with the
    lrs its interval's ends give."""
    low, high = ridge.alpha_interval
    if high - low <= UNCERTAIN_ALPHA_WIDTH or ratio == 1:
        return None
    ends = sorted(best_lr * ratio**alpha for alpha in (low, high))
    return (
        f"the exponent's 95 % interval [{low:.2f}, {high:.2f}] is wide: the lr lies anywhere "
        f"from {ends[0]:.3g} to {ends[1]:.3g}; more trials at more batch sizes narrow it"
    )


def _no_noise_scale(study: str, why: str) -> str:
    return (
        f"{why}, and study {study!r} has no measured critical batch size; measure it with "
        f"batchlr noise-scale --study {study}"
    )
