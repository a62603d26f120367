"""How the learning rate grows with the batch size under a study's ``--lr-scaling`` rule."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Literal, get_args

from batchlr.rules import is_finite_number, one_of, require, whole

ADAPTIVE_OPTIMIZERS: frozenset[str] = frozenset({"adam", "rmsprop", "adamw"})
"""Optimizers that divide by a running gradient scale: their best lr grows about as the square
root of the batch size (Malladi et al. 2022), and may surge (Li et al. 2024)."""

LrScalingRule = Literal["none", "linear", "sqrt", "noise"]
LR_SCALING_RULES: tuple[LrScalingRule, ...] = get_args(LrScalingRule)
DEFAULT_REFERENCE_BATCH_SIZE = 256


@dataclasses.dataclass(frozen=True)
class LrScaling:
    """How the learning rate grows with the batch size from ``base_lr`` at ``reference_batch_size``.

    ``linear``: lr = base_lr * B / B0 (Goyal et al. 2017); ``sqrt``: lr = base_lr * sqrt(B / B0)
    (Hoffer et al. 2017); ``noise``: lr = base_lr * r(B) / r(B0), the AdaScale gain (Johnson et
    al. 2020) r(B) = (tr(S) + |G|^2) / (tr(S)/B + |G|^2) of the study's measured gradient
    ``noise_scale`` tr(S)/|G|^2, or its square root for the adaptive optimizers (Pollux's
    choice): linear far below the noise scale, flat far above it. ``none``: the study searches
    lr itself. ``noise_scale`` is measured when a ``noise`` study is created (None until then).
    """

    rule: LrScalingRule = "none"
    reference_batch_size: int = DEFAULT_REFERENCE_BATCH_SIZE
    noise_scale: float | None = None

    def __post_init__(self) -> None:
        one_of("lr_scaling", self.rule, LR_SCALING_RULES)
        whole("reference_batch_size", self.reference_batch_size, 1)
        noise = self.noise_scale
        require(
            noise is None or (is_finite_number(noise) and noise > 0),
            "noise_scale",
            noise,
            "give the measured gradient noise scale, a positive number",
        )

    def lr(self, base_lr: float, batch_size: int, optimizer: str) -> float:
        """The learning rate of ``optimizer`` for ``batch_size``.

        Raises:
            ValueError: under ``noise`` before the noise scale is measured.
        """
        if self.rule == "none":
            return base_lr
        ratio = batch_size / self.reference_batch_size
        if self.rule == "linear":
            return base_lr * ratio
        if self.rule == "sqrt":
            return base_lr * math.sqrt(ratio)
        if self.noise_scale is None:
            raise ValueError("lr scaling by the noise scale before it is measured")
        noise = self.noise_scale
        gain = (noise / self.reference_batch_size + 1) / (noise / batch_size + 1)
        return base_lr * (math.sqrt(gain) if optimizer in ADAPTIVE_OPTIMIZERS else gain)

    def to_attrs(self) -> dict[str, Any]:
        """The rule as the options that set it. The reference batch size is kept without a rule
        too, so that a resumed run given only --reference-batch-size compares it with the study's."""
        return {
            "lr_scaling": self.rule,
            "reference_batch_size": self.reference_batch_size,
            "noise_scale": self.noise_scale,
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> LrScaling:
        """From stored attrs or options; a missing or null key takes its default.

        Raises:
            SettingError: for an unknown rule or a reference batch size that is no whole number of at least 1.
        """
        reference = attrs.get("reference_batch_size")
        return cls(
            attrs.get("lr_scaling") or "none",
            DEFAULT_REFERENCE_BATCH_SIZE if reference is None else reference,
            attrs.get("noise_scale"),
        )


NO_LR_SCALING = LrScaling()
"""Every trial trains with the lr it draws: a study's default."""
