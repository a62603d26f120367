"""The lines of the probes: the LR range test's and the gradient noise scale's."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchlr.objectives.probes import LrRangeTest, NoiseScale
    from batchlr.objectives.trainer import Regime


# An LR range test whose smoothed loss fell less than this found no descent.
RELIABLE_LOSS_DROP = 0.05


def weak_descent_warning(loss_drop: float, remedy: str) -> str | None:
    """A warning when an LR range test's loss fell less than :data:`RELIABLE_LOSS_DROP`, else None."""
    if loss_drop >= RELIABLE_LOSS_DROP:
        return None
    return f"warning: the LR range test's loss fell only {loss_drop:.1%}, so its suggestion is weak; {remedy}"


def regime(trained: Regime, study: str | None) -> str:
    """The line that says how a probe trained: as ``study``'s trials, or a new study's."""
    whose = f"study {study!r}'s trials" if study else "the trials of a new study with these options"
    augment = f"augment {','.join(trained.augment)}" if trained.augment else "no augmentation"
    smoothing = (
        f"label smoothing {trained.label_smoothing:g}"
        if trained.label_smoothing
        else "no label smoothing"
    )
    passes = math.ceil(trained.batch_size / trained.micro_batch)
    split = (
        f"batch {trained.batch_size} in {passes} micro-batches of up to {trained.micro_batch}"
        if passes > 1
        else f"batch {trained.batch_size} in one pass"
    )
    return f"trained as {whose}: {trained.precision}, {augment}, {smoothing}, {split}"


def regime_record(trained: Regime, study: str | None) -> dict[str, Any]:
    """The regime in a probe's ``--json`` record."""
    return {"study": study, **dataclasses.asdict(trained)}


def lr_range(result: LrRangeTest, study: str | None) -> tuple[list[str], str | None]:
    """What ``batchlr lr-find`` prints: the suggestion and the search around it, how it trained
    (see :func:`regime`), and a warning when the curve had no real descent, or None."""
    stop = (
        f"stopped at lr {result.lrs[-1]:.3g} as the loss diverged"
        if result.stopped_early
        else f"swept to lr {result.lrs[-1]:.3g}"
    )
    lines = [
        f"suggested lr {result.suggested_lr:.3g} ({len(result.lrs)} learning rates, {stop})",
        f"search around it: batchlr run --lr {result.suggested_lr / 10:.2g}:{result.suggested_lr * 10:.2g}",
        regime(result.regime, study),
    ]
    return lines, weak_descent_warning(
        result.loss_drop, "try more --lr-count, another --optimizer or --batch-size"
    )


def lr_range_record(result: LrRangeTest, study: str | None) -> dict[str, Any]:
    """What ``batchlr lr-find --json`` prints."""
    return {
        "suggested_lr": result.suggested_lr,
        "lrs": result.lrs,
        "losses": result.losses,
        "stopped_early": result.stopped_early,
        "loss_drop": result.loss_drop,
        "regime": regime_record(result.regime, study),
    }


def noise_scale_record(result: NoiseScale, study: str | None) -> dict[str, Any]:
    """What ``batchlr noise-scale --json`` prints."""
    return {
        "critical_batch_size": result.critical_batch_size,
        "suggested_batch_range": result.suggested_batch_range,
        **dataclasses.asdict(result),
        "regime": regime_record(result.regime, study),
    }


def noise_scale(
    result: NoiseScale, epochs: int, study: str | None, largest_batch: int
) -> list[str]:
    """What ``batchlr noise-scale`` prints: the estimate, its parts, the batch range it suggests
    (and whether the data can batch that much: ``largest_batch`` is a fold's training samples),
    how its gradients were taken (see :func:`regime`), and where the measurement is kept."""
    when = f"after {epochs} epochs" if epochs else "at initialisation"
    low, high = result.suggested_batch_range
    lines = [
        f"gradient noise scale B_simple = {result.noise_scale:.1f} {when} (|G|^2 "
        f"{result.gradient_norm_squared:.3g}, tr(S) {result.covariance_trace:.3g}; batches "
        f"{result.small_batch} and {result.big_batch}, {result.repeats} repeats)",
        f"critical batch size ~ {result.critical_batch_size}: batches up to it cut the steps "
        "almost proportionally, larger ones mostly add compute",
        f"suggested batch range: {low}:{high}",
    ]
    if high > largest_batch:
        lines.append(
            f"note: a fold trains on {largest_batch} samples, so batches above {largest_batch} "
            f"cannot be drawn: the data set is too small for {'this range' if low > largest_batch else 'its top'}; "
            "the noise scale grows as the loss falls, so measure after some --epochs"
        )
    lines.append(regime(result.regime, study))
    if study:
        lines.append(
            f"kept with study {study!r}: its export extrapolates the lr ridge up to batch "
            f"{result.critical_batch_size}"
        )
    return lines
