"""The checks that records' rules are made of: each record states the rule of each of its
settings once, with these, and a setting that breaks it raises
:class:`~batchlr.errors.SettingError` naming the setting's key.

Records are built from options, study files, the storage and exported files, so a value may
come as any JSON type: each check also checks the type.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeGuard, TypeVar

from batchlr.errors import BatchlrError, SettingError

Choice = TypeVar("Choice", bound=str)


def is_whole_number(value: Any) -> TypeGuard[int]:
    """Whether a value read from a file or a storage is an int; ``True`` is one to Python, but no count."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """Whether a value read from a file or a storage is an int or a float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """:func:`is_real`, and neither nan, infinite, nor a whole number too large to be a float."""
    return is_real(value) and -sys.float_info.max <= value <= sys.float_info.max


def require(holds: bool, key: str, value: object, problem: str) -> None:
    """Raise :class:`SettingError` for ``key`` unless its rule ``holds``."""
    if not holds:
        raise SettingError(key, value, problem)


def whole(key: str, value: object, least: int, most: int | None = None) -> None:
    """``value`` is a whole number from ``least`` (to ``most``)."""
    within = is_whole_number(value) and least <= value and (most is None or value <= most)
    span = f"from {least} to {most}" if most is not None else f"of at least {least}"
    require(within, key, value, f"must be a whole number {span}")


def one_of(key: str, value: object, choices: tuple[Choice, ...]) -> Choice:
    """``value`` is one of ``choices``; returned as their type."""
    require(value in choices, key, value, f"choose from {', '.join(choices)}")
    return next(choice for choice in choices if choice == value)


def names_of(key: str, value: object, choices: tuple[Choice, ...]) -> tuple[Choice, ...]:
    """``value`` is a list of ``choices`` (``empty_ok``: possibly none); returned as a tuple."""
    require(
        isinstance(value, (list, tuple)) and all(name in choices for name in value),
        key,
        value,
        f"give names from {', '.join(choices)}",
    )
    assert isinstance(value, (list, tuple))  # required just above
    return tuple(one_of(key, name, choices) for name in value)


def pair(key: str, value: object, fits: Collection[bool] | None = None) -> None:
    """``value`` is two items, the first not above the second (``fits``: each item's own check)."""
    ordered = (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and (fits is None or all(fits))
        and value[0] <= value[1]
    )
    require(ordered, key, value, "give MIN:MAX with MIN <= MAX")


def positive_whole(value: Any) -> bool:
    return is_whole_number(value) and value >= 1


def finite(value: Any) -> bool:
    return is_real(value) and math.isfinite(value)


def positive_finite(value: Any) -> bool:
    return finite(value) and value > 0


class RecordReader:
    """Reads a record's keys, raising a :class:`BatchlrError` that names the first bad one."""

    def __init__(self, what: str, record: Any) -> None:
        if not isinstance(record, Mapping):
            raise BatchlrError(f"{what}: {record!r:.60} is not a JSON object")
        self.what, self.record = what, record

    def __call__(self, key: str, valid: Callable[[Any], bool]) -> Any:
        if key not in self.record:
            raise BatchlrError(f"{self.what}: key {key!r} is missing")
        value = self.record[key]
        if not valid(value):
            raise BatchlrError(f"{self.what}: key {key!r} holds {value!r:.60}, not a valid value")
        return value

    def pair(self, key: str, valid: Callable[[Any], bool], kind: type[Any]) -> tuple[Any, Any]:
        """Two valid values in order, as a list holds them in JSON."""
        value = self(key, lambda value: isinstance(value, list) and len(value) == 2)
        if not (all(map(valid, value)) and value[0] <= value[1]):
            raise BatchlrError(f"{self.what}: key {key!r} holds {value!r:.60}, not a valid range")
        return kind(value[0]), kind(value[1])
