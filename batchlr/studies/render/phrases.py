"""Phrases that lines of every kind share: parameters, the training a study does, a missing
number, what was attached to a study."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from batchlr.studies.store.spec import StudySpec

if TYPE_CHECKING:
    from batchlr.studies.results.artifacts import Attachment


def format_params(params: dict[str, Any]) -> str:
    """``key=value`` pairs, floats to three significant digits."""
    return " ".join(
        f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in sorted(params.items())
    )


def training_phrase(spec: StudySpec) -> str:
    """One phrase for a study's budget, LR scaling, schedule, warmup and recipe: image size,
    augmentation, weight decay, label smoothing, Nesterov momentum and a precision other than
    auto, each where set."""
    training, space = spec.training, spec.space
    scaling, decay = space.lr_scaling, space.weight_decay
    amount, kind = training.budget.amount, training.budget.kind
    parts = [f"{amount} {kind.removesuffix('s') if amount == 1 else kind}"]
    if scaling.rule != "none":
        noise = f" (noise scale {scaling.noise_scale:.0f})" if scaling.noise_scale else ""
        parts.append(f"lr {scaling.rule}-scaled from batch {scaling.reference_batch_size}{noise}")
    if training.schedule != "constant":
        parts.append(f"{training.schedule} schedule")
    if training.warmup:
        parts.append(f"{training.warmup:g} warmup epochs")
    if spec.image_size:
        parts.append(f"images resized to {spec.image_size[0]}x{spec.image_size[1]}")
    if training.augment:
        padding = f" (padding {training.crop_padding})" if training.crop_padding else ""
        parts.append(f"augment {','.join(training.augment)}{padding}")
    if decay.searched:
        parts.append(
            f"weight_decay {decay.low:.3g}:{decay.high:.3g}{' or none' if decay.try_none else ''}"
        )
    elif decay.low:
        parts.append(f"weight decay {decay.low:g}")
    if training.label_smoothing:
        parts.append(f"label smoothing {training.label_smoothing:g}")
    if space.nesterov:
        parts.append("nesterov")
    if training.precision != "auto":
        parts.append(f"precision {training.precision}")
    return ", ".join(parts)


def or_nan(value: float | None) -> float:
    """``value``, or nan (printed as ``nan``) for a number a trial lacks."""
    return math.nan if value is None else value


def attached(what: str, attachment: Attachment) -> tuple[list[str], str | None]:
    """Where ``refit``'s model, ``report``'s files or a probe's figure (``what``) were attached,
    or a warning naming exactly the files attached, those not, and why."""
    if not attachment.missed:
        return [
            f"attached the {what} to study {attachment.study}'s artifacts in {attachment.store}"
        ], None
    missed = f"{', '.join(path.name for path in attachment.missed)}; {attachment.reason}"
    if not attachment.attached:
        return [], f"warning: not attached to the study's artifacts: {missed}"
    total = len(attachment.attached) + len(attachment.missed)
    names = ", ".join(path.name for path in attachment.attached)
    return (
        [],
        f"warning: attached {len(attachment.attached)} of {total} files to the study's artifacts "
        f"in {attachment.store}: {names}; not attached: {missed}",
    )
