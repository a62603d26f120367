"""Weight decay: one value every trial uses, or a range a study searches."""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Mapping
from typing import Any

import optuna

from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.rules import is_finite_number, require

PARAM = "weight_decay"
SWITCH_PARAM = "use_weight_decay"
"""The param of a study that also tries no weight decay: False trials draw no :data:`PARAM`."""

MAX_WEIGHT_DECAY = 10.0
"""Above this the decay dominates any gradient and the weights only shrink to zero."""


@dataclasses.dataclass(frozen=True)
class WeightDecay:
    """The L2 penalty (decoupled under AdamW) of every trial: ``low`` when ``low == high``,
    else searched on a log scale between them as param ``weight_decay``; with ``try_none``
    each trial first draws param ``use_weight_decay``, so that no decay competes too (a log
    scale cannot reach 0)."""

    low: float = 0.0
    high: float = 0.0
    try_none: bool = False

    def __post_init__(self) -> None:
        low, high = self.low, self.high
        require(
            is_finite_number(low)
            and is_finite_number(high)
            and 0 <= low <= high <= MAX_WEIGHT_DECAY,
            "weight_decay",
            (low, high) if low != high else low,
            f"give a number or MIN:MAX with 0 <= MIN <= MAX <= {MAX_WEIGHT_DECAY:g}",
        )
        require(
            not (low != high and low == 0),
            "weight_decay",
            (low, high),
            "a log scale cannot start at 0; give a positive MIN and try_no_weight_decay",
        )
        require(
            isinstance(self.try_none, bool),
            "try_no_weight_decay",
            self.try_none,
            "give true or false",
        )
        require(
            not (self.try_none and low == high),
            "try_no_weight_decay",
            self.try_none,
            "goes with a searched weight_decay MIN:MAX",
        )

    @property
    def searched(self) -> bool:
        return self.low != self.high

    def suggest(self, trial: optuna.Trial) -> float:
        """The trial's weight decay, drawn when searched."""
        if not self.searched:
            return self.low
        if self.try_none and not trial.suggest_categorical(SWITCH_PARAM, [True, False]):
            return 0.0
        return trial.suggest_float(PARAM, self.low, self.high, log=True)

    def from_params(self, params: Mapping[str, Any]) -> float:
        """The weight decay a trial with ``params`` trained with.

        Raises:
            BatchlrError: when a searched decay is missing or no number in the range's bounds.
        """
        if not self.searched:
            return self.low
        if self.try_none and params.get(SWITCH_PARAM) is False:
            return 0.0
        value = params.get(PARAM)
        if not (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and 0 <= value <= MAX_WEIGHT_DECAY
        ):
            raise BatchlrError(
                f"{PARAM} {reprlib.repr(value)} is not a weight decay from 0 to {MAX_WEIGHT_DECAY:g}"
            )
        return float(value)

    def to_attrs(self) -> dict[str, Any]:
        """``weight_decay`` as a number, or [MIN, MAX] when searched, and ``try_no_weight_decay``."""
        return {
            "weight_decay": [self.low, self.high] if self.searched else self.low,
            "try_no_weight_decay": self.try_none,
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> WeightDecay:
        """From stored attrs or options (a number or a pair); missing keys: no weight decay.

        Raises:
            SettingError: for a value that is neither.
        """
        value: Any = attrs.get("weight_decay") or 0.0
        pair = isinstance(value, (list, tuple)) and len(value) == 2
        require(
            is_finite_number(value) or (pair and all(map(is_finite_number, value))),
            "weight_decay",
            value,
            f"give a number or MIN:MAX from 0 to {MAX_WEIGHT_DECAY:g}",
        )
        low, high = value if pair else (value, value)
        return cls(float(low), float(high), attrs.get("try_no_weight_decay") or False)


NO_WEIGHT_DECAY = WeightDecay()
"""Every trial trains without weight decay: a study's default."""


def parse_weight_decay(text: str) -> tuple[float, float]:
    """``W`` (one value, 0 for none) or ``MIN:MAX`` (searched on a log scale) as a pair.

    Raises:
        BatchlrUsageError: for malformed text, negative or non-finite values, or MIN > MAX.
    """
    parts = text.split(":")
    try:
        if len(parts) > 2:
            raise ValueError
        low, high = float(parts[0]), float(parts[-1])
    except ValueError as error:
        raise BatchlrUsageError(
            f"{text!r} is neither a weight decay nor MIN:MAX; write it like 5e-4 or 1e-5:1e-2"
        ) from error
    return low, high  # checked where the setting is made (WeightDecay)
