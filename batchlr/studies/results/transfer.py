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
    """The lr for ``batch_size`` from the best trial's ``best_lr`` at ``best_batch``.

    Without ``forced``: within the ridge's batch range, its fitted exponent; beyond it, the
    exponent up to the critical batch size ``noise_scale`` and held past it (no noise scale:
    extrapolated, with a warning that names ``noise-scale --study``); with no ridge, the
    study's lr scaling rule. ``forced`` names a rule instead: ``linear``, ``sqrt``, or
    ``noise`` (the AdaScale gain of the noise scale; its square root for adaptive optimizers).

    Raises:
        BatchlrError: where no rule applies: no ridge and no scaling rule, or ``noise`` without
            a measured noise scale.
    """
    ratio = batch_size / best_batch
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
            raise BatchlrError(
                f"study {study!r} fitted no lr ridge and searched lr without a scaling rule; "
                "call lr_for(batch_size, rule='linear', 'sqrt' or 'noise')"
            )
        from_best = dataclasses.replace(scaling, reference_batch_size=best_batch)
        lr = from_best.lr(best_lr, batch_size, optimizer)
        return LrRule(batch_size, lr, f"the study's {scaling.rule} scaling (no ridge was fitted)")
    low, high = ridge.batch_range
    fitted = f"the ridge lr ~ B^{ridge.alpha:.2f} fitted from {low} to {high}"
    if low <= batch_size <= high:
        return LrRule(batch_size, best_lr * ratio**ridge.alpha, f"{fitted}, from the best trial")
    if noise_scale is None:
        return LrRule(
            batch_size,
            best_lr * ratio**ridge.alpha,
            f"{fitted}, extrapolated",
            _no_noise_scale(study, f"batch {batch_size} lies outside {low} to {high}"),
        )
    reach = min(batch_size, max(noise_scale, best_batch))
    lr = best_lr * (reach / best_batch) ** ridge.alpha
    held = "" if reach == batch_size else f" and held past the critical batch size {reach:.0f}"
    return LrRule(
        batch_size,
        lr,
        f"{fitted}, extrapolated{held}",
        f"batch {batch_size} lies outside the fitted {low} to {high}",
    )


def _no_noise_scale(study: str, why: str) -> str:
    return (
        f"{why}, and study {study!r} has no measured critical batch size; measure it with "
        f"batchlr noise-scale --study {study}"
    )
