"""Learning-rate schedules over a known number of optimizer steps, with optional linear warmup."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    import torch

Schedule = Literal["constant", "cosine", "onecycle"]
SCHEDULE_NAMES: tuple[Schedule, ...] = get_args(Schedule)

# One-cycle (Smith & Topin 2019) as in torch's OneCycleLR defaults: start at lr/25, peak
# after 30 % of the steps, end at lr/25/1e4, without cycling momentum (the study searches it).
ONECYCLE_RISE = 0.3
ONECYCLE_START = 1 / 25
ONECYCLE_END = ONECYCLE_START / 1e4


def lr_factor(step: int, total_steps: int, schedule: Schedule, warmup_steps: int = 0) -> float:
    """The multiple of the peak learning rate used at optimizer step ``step`` (0-based).

    Warmup rises linearly to 1 over ``warmup_steps``; the schedule runs over the rest.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "onecycle":
        if progress < ONECYCLE_RISE:
            return ONECYCLE_START + (1 - ONECYCLE_START) * _cosine_ramp(progress / ONECYCLE_RISE)
        return ONECYCLE_END + (1 - ONECYCLE_END) * (
            1 - _cosine_ramp((progress - ONECYCLE_RISE) / (1 - ONECYCLE_RISE))
        )
    raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULE_NAMES)}")


def _cosine_ramp(fraction: float) -> float:
    """0 at 0, 1 at 1, smooth at both ends."""
    return 0.5 * (1 - math.cos(math.pi * fraction))


def make_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, schedule: Schedule, warmup_steps: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A torch scheduler to step once per optimizer step, following :func:`lr_factor`."""
    import torch  # here, so that the CLI can list SCHEDULE_NAMES without loading torch

    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, schedule, warmup_steps)
    )
