"""What each stored study setting may hold: checked whenever a spec is read, wherever from.

A setting comes from options (tuples, paths), the storage or an exported file (JSON lists,
strings); each rule accepts all three forms, and names the setting in its error.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable, Mapping
from pathlib import PurePath
from typing import Any

from batchlr.errors import BatchlrError
from batchlr.objectives.micro_batches import AUTO
from batchlr.objectives.schedules import SCHEDULE_NAMES
from batchlr.objectives.settings import (
    AUGMENTATIONS,
    BUDGET_KINDS,
    MAX_IMAGE_SIDE,
    OBJECTIVES,
    PRECISIONS,
)
from batchlr.search import PRUNER_NAMES, SAMPLER_NAMES
from batchlr.search.space import (
    GRID_PARAMS,
    LR_SCALING_RULES,
    OPTIMIZER_NAMES,
    SEED_LIMIT,
    grid_point_counts,
    is_finite_number,
    is_whole_number,
)
from batchlr.search.weight_decay import MAX_WEIGHT_DECAY


def _pair(value: Any, kind: Callable[[Any], bool]) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(map(kind, value))


def _names(value: Any, known: tuple[str, ...]) -> bool:
    return (
        isinstance(value, (list, tuple))
        and bool(value)
        and all(isinstance(name, str) and name in known for name in value)
    )


def _finite(least: float) -> Callable[[Any], bool]:
    return lambda value: is_finite_number(value) and least <= value


def _counts(least: int, limit: float = math.inf) -> Callable[[Any], bool]:
    return lambda value: is_whole_number(value) and least <= value < limit


def _fraction(value: Any) -> bool:
    return is_finite_number(value) and 0 <= value < 1


def _weight_decay(value: Any) -> bool:
    def fits(number: Any) -> bool:
        return is_finite_number(number) and 0 <= number <= MAX_WEIGHT_DECAY

    return fits(value) or (_pair(value, fits) and value[0] <= value[1])


def _grid_points(value: Any) -> bool:
    try:
        return isinstance(value, str) and bool(grid_point_counts(value))
    except BatchlrError:
        return False


SETTING_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "dataset": (lambda value: isinstance(value, str), "a data set name"),
    "image_size": (
        lambda value: _pair(value, lambda side: _counts(1, MAX_IMAGE_SIDE + 1)(side)),
        f"[HEIGHT, WIDTH] of whole numbers from 1 to {MAX_IMAGE_SIDE}",
    ),
    "model": (lambda value: isinstance(value, str), "a model name"),
    "folds": (_counts(2), "a whole number of at least 2"),
    "batch_size": (
        lambda value: _pair(value, is_whole_number) and 1 <= value[0] <= value[1],
        "[MIN, MAX] of whole numbers, 1 <= MIN <= MAX",
    ),
    "lr": (
        lambda value: _pair(value, _finite(0)) and 0 < value[0] <= value[1],
        "[MIN, MAX] of finite numbers, 0 < MIN <= MAX",
    ),
    "optimizers": (
        lambda value: _names(value, OPTIMIZER_NAMES),
        f"a list of {', '.join(OPTIMIZER_NAMES)}",
    ),
    "lr_scaling": (
        lambda value: value in LR_SCALING_RULES,
        f"one of {', '.join(LR_SCALING_RULES)}",
    ),
    "reference_batch_size": (_counts(1), "a whole number of at least 1"),
    "budget": (lambda value: value in BUDGET_KINDS, f"one of {', '.join(BUDGET_KINDS)}"),
    "epochs": (_counts(1), "a whole number of at least 1"),
    "steps": (_counts(1), "a whole number of at least 1"),
    "schedule": (lambda value: value in SCHEDULE_NAMES, f"one of {', '.join(SCHEDULE_NAMES)}"),
    "warmup": (_finite(0), "a finite number of epochs, 0 or more"),
    "max_micro_batch": (
        lambda value: value == AUTO or _counts(1)(value),
        f"a whole number of at least 1, or {AUTO}",
    ),
    "objectives": (
        lambda value: isinstance(value, (list, tuple)) and tuple(value) in OBJECTIVES,
        "[accuracy] or [accuracy, time]",
    ),
    "augment": (
        lambda value: (
            isinstance(value, (list, tuple)) and all(name in AUGMENTATIONS for name in value)
        ),
        f"a list of {', '.join(AUGMENTATIONS)}",
    ),
    "crop_padding": (_counts(1), "a whole number of pixels, at least 1"),
    "label_smoothing": (_fraction, "a number from 0 up to 1"),
    "precision": (lambda value: value in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
    "weight_decay": (_weight_decay, f"a number or [MIN, MAX] from 0 to {MAX_WEIGHT_DECAY:g}"),
    "try_no_weight_decay": (lambda value: isinstance(value, bool), "true or false"),
    "nesterov": (lambda value: isinstance(value, bool), "true or false"),
    "seed": (_counts(0, SEED_LIMIT), f"a whole number from 0 to {SEED_LIMIT - 1}"),
    "sampler": (lambda value: value in SAMPLER_NAMES, f"one of {', '.join(SAMPLER_NAMES)}"),
    "grid_points": (_grid_points, f"NAME=N pairs of {', '.join(GRID_PARAMS)}"),
    "pruner": (lambda value: value in PRUNER_NAMES, f"one of {', '.join(PRUNER_NAMES)}"),
    "data_dir": (lambda value: isinstance(value, (str, PurePath)), "a path"),
    "lr_find": (
        lambda value: (
            isinstance(value, Mapping)
            and all(
                isinstance(key, str)
                and (item is None or is_finite_number(item) or isinstance(item, str))
                for key, item in value.items()
            )
        ),
        "the LR range test's record of numbers and names",
    ),
}
"""What each setting may hold, with a phrase for the error."""


def checked_settings(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``attrs`` without null settings, once every other setting passes :data:`SETTING_RULES`.

    Raises:
        BatchlrError: naming the first setting that does not.
    """
    for key, (fits, phrase) in SETTING_RULES.items():
        value = attrs.get(key)
        if value is not None and not fits(value):
            raise BatchlrError(f"setting {key} = {reprlib.repr(value)} is not {phrase}")
    return {
        key: value for key, value in attrs.items() if not (value is None and key in SETTING_RULES)
    }
