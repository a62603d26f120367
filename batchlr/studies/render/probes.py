"""The lines of the probes: the LR range test's and the gradient noise scale's."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchlr.objectives.probes import LrRangeTest, NoiseScale


# An LR range test whose smoothed loss fell less than this found no descent.
RELIABLE_LOSS_DROP = 0.05


def weak_descent_warning(loss_drop: float, remedy: str) -> str | None:
    """A warning when an LR range test's loss fell less than :data:`RELIABLE_LOSS_DROP`, else None."""
    if loss_drop >= RELIABLE_LOSS_DROP:
        return None
    return f"warning: the LR range test's loss fell only {loss_drop:.1%}, so its suggestion is weak; {remedy}"


def lr_range(result: LrRangeTest) -> tuple[list[str], str | None]:
    """What ``batchlr lr-find`` prints: the suggestion and the search around it, and a warning
    when the curve had no real descent, or None."""
    stop = (
        f"stopped at lr {result.lrs[-1]:.3g} as the loss diverged"
        if result.stopped_early
        else f"swept to lr {result.lrs[-1]:.3g}"
    )
    lines = [
        f"suggested lr {result.suggested_lr:.3g} ({len(result.lrs)} learning rates, {stop})",
        f"search around it: batchlr run --lr {result.suggested_lr / 10:.2g}:{result.suggested_lr * 10:.2g}",
    ]
    return lines, weak_descent_warning(
        result.loss_drop, "try more --lr-count, another --optimizer or --batch-size"
    )


def lr_range_record(result: LrRangeTest) -> dict[str, Any]:
    """What ``batchlr lr-find --json`` prints."""
    return {
        "suggested_lr": result.suggested_lr,
        "lrs": result.lrs,
        "losses": result.losses,
        "stopped_early": result.stopped_early,
        "loss_drop": result.loss_drop,
    }


def noise_scale_record(result: NoiseScale) -> dict[str, Any]:
    """What ``batchlr noise-scale --json`` prints."""
    return {
        "critical_batch_size": result.critical_batch_size,
        "suggested_batch_range": result.suggested_batch_range,
        **dataclasses.asdict(result),
    }


def noise_scale(result: NoiseScale, epochs: int) -> list[str]:
    """What ``batchlr noise-scale`` prints: the estimate, its parts and the batch range it suggests."""
    when = f"after {epochs} epochs" if epochs else "at initialisation"
    low, high = result.suggested_batch_range
    return [
        f"gradient noise scale B_simple = {result.noise_scale:.1f} {when} (|G|^2 "
        f"{result.gradient_norm_squared:.3g}, tr(S) {result.covariance_trace:.3g}; batches "
        f"{result.small_batch} and {result.big_batch}, {result.repeats} repeats)",
        f"critical batch size ~ {result.critical_batch_size}: batches up to it cut the steps "
        "almost proportionally, larger ones mostly add compute",
        f"suggested batch range: {low}:{high}",
    ]
