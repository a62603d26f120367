"""The grid sampler's points: which params ``--grid-points`` sets and how many values each
takes, and the log-spaced values themselves."""

from __future__ import annotations

import math
from typing import TypeVar

from batchlr.errors import SettingError
from batchlr.whole_numbers import whole_number

Number = TypeVar("Number", int, float)

GRID_PARAMS: tuple[str, ...] = ("lr", "batch_size", "weight_decay")
"""The params ``--grid-points`` sets; ``lr`` means base_lr under an LR scaling rule."""
MAX_GRID_POINTS = 1000


def parse_grid_points(text: str) -> str:
    """``--grid-points`` in its canonical form: ``NAME=N`` pairs of :data:`GRID_PARAMS`, comma-separated.

    Raises:
        BatchlrUsageError: for an unknown name, or a count outside 2..:data:`MAX_GRID_POINTS`.
    """
    return ",".join(f"{name}={count}" for name, count in grid_point_counts(text).items())


def grid_point_counts(text: str | None) -> dict[str, int]:
    """The counts of ``--grid-points`` text by param (see :func:`parse_grid_points`)."""
    counts: dict[str, int] = {}
    for part in filter(None, (text or "").replace(" ", "").split(",")):
        name, equals, count_text = part.partition("=")
        count = whole_number(count_text)
        if (
            name not in GRID_PARAMS
            or not equals
            or count is None
            or not 2 <= count <= MAX_GRID_POINTS
        ):
            raise SettingError(
                "grid_points",
                text,
                f"give NAME=N pairs of {', '.join(GRID_PARAMS)} with N from 2 to "
                f"{MAX_GRID_POINTS}, like lr=12,batch_size=8",
            )
        counts[name] = count
    return counts


def log_points(low: Number, high: Number, count: int, kind: type[Number]) -> list[Number]:
    """``count`` values spaced evenly in log from ``low`` to ``high`` (fewer when whole numbers coincide)."""
    values = [low * (high / low) ** (index / (count - 1)) for index in range(count)]
    return sorted({kind(round(value)) if kind is int else kind(value) for value in values})


def log_ladder(low: Number, high: Number, *, base: int, kind: type[Number]) -> list[Number]:
    """``low``, every power of ``base`` strictly between, and ``high``."""
    first = math.floor(math.log(low, base)) + 1
    last = math.ceil(math.log(high, base)) - 1
    inner = [kind(base**exponent) for exponent in range(first, last + 1)]
    # union, not {low, *inner, high}: mypy cannot type a star in a display under a constrained TypeVar
    return sorted({low, high}.union(value for value in inner if low < value < high))
