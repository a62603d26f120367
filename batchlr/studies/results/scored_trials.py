"""A study's complete trials as scored points, for the fits drawn from them, and reading the
plain records those fits export back from a file."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from batchlr.errors import BatchlrError
from batchlr.objectives.trial_record import TrialRecord
from batchlr.rules import is_real, is_whole_number
from batchlr.search.space import Hyperparameters, SearchSpace


@dataclasses.dataclass(frozen=True)
class ScoredTrial:
    """A complete trial: its optimizer, batch size, the lr it trained with (after any scaling
    rule), its cross-validated accuracy and its fold scores."""

    number: int
    optimizer: str
    batch_size: int
    lr: float
    value: float
    fold_scores: tuple[float, ...]


def scored_trials(trials: Sequence[FrozenTrial], space: SearchSpace | None) -> list[ScoredTrial]:
    """The complete ``trials`` with a finite accuracy, by batch size, lr and number.

    Raises:
        BatchlrError: for a complete trial whose params are not those of ``space``.
    """
    read = []
    for trial in trials:
        if trial.state != TrialState.COMPLETE or not math.isfinite(trial.values[0]):
            continue
        record = TrialRecord.from_trial(trial)
        drawn = Hyperparameters.from_params(trial.params, space)
        lr = drawn.lr if record.lr is None else record.lr
        scores = tuple(record.fold_scores or ())
        read.append(
            ScoredTrial(
                trial.number, drawn.optimizer, drawn.batch_size, lr, trial.values[0], scores
            )
        )
    return sorted(read, key=lambda trial: (trial.batch_size, trial.lr, trial.number))


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
