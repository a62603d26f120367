"""What was measured about a study's data: stored when the study is created, what a script
outside batchlr needs to feed a model as the trials did (input shape, normalisation) and what a
fit needs to tell learning from guessing (the number of classes); and, once ``batchlr
noise-scale --study`` and ``batchlr throughput`` ran, the critical batch size and the speed of
the band's batch sizes on a device."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

import optuna

from batchlr.errors import BatchlrError
from batchlr.rules import is_finite_number, is_whole_number

STOPPED_ATTR = "batchlr_stopped"
"""The study user attr that says why, and after how many finished trials, ``--stop auto`` stopped."""
THROUGHPUT_ATTR = "batchlr_throughput"
"""The study user attr of the last ``batchlr throughput`` measurement, which exports carry."""
NOISE_ATTR = "batchlr_noise_scale"
"""The study user attr of the last noise-scale measurement of the study's regime."""
DATA_ATTR = "batchlr_data"
"""The study user attr of the facts: beside the settings, which do not include it."""


@dataclasses.dataclass(frozen=True)
class DataFacts:
    """The images' ``input_shape`` (channels, height, width) after any resize, the number of
    ``classes``, and the per-channel ``mean`` and ``std`` of pixels scaled to [0, 1] that
    batches are normalised with (of the searched images, never the hold-out's)."""

    input_shape: tuple[int, int, int]
    classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def chance(self) -> float:
        """The accuracy of guessing the most frequent class at best: 1 / classes."""
        return 1 / self.classes

    def to_record(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape),
            "classes": self.classes,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_record(cls, record: Any) -> DataFacts:
        """The facts of :meth:`to_record`'s ``record``.

        Raises:
            BatchlrError: for a record of other keys or types.
        """
        if not (
            isinstance(record, Mapping)
            and _numbers(record.get("input_shape"), is_whole_number)
            and len(record["input_shape"]) == 3
            and is_whole_number(record.get("classes"))
            and record["classes"] >= 1
            and _numbers(record.get("mean"), is_finite_number)
            and _numbers(record.get("std"), is_finite_number)
        ):
            raise BatchlrError(
                f"data = {record!r:.80} is not input_shape, classes, mean and std of a data set"
            )
        channels, height, width = record["input_shape"]
        return cls(
            (channels, height, width),
            record["classes"],
            tuple(map(float, record["mean"])),
            tuple(map(float, record["std"])),
        )


def _numbers(value: Any, kind: Any) -> bool:
    return isinstance(value, list) and all(map(kind, value))


def save_data_facts(storage: optuna.storages.BaseStorage, study: str, facts: DataFacts) -> None:
    """Store ``facts`` with the study."""
    study_id = storage.get_study_id_from_name(study)
    storage.set_study_user_attr(study_id, DATA_ATTR, facts.to_record())


def data_facts(study: optuna.Study) -> DataFacts | None:
    """The study's data facts; None for a study created before batchlr stored them.

    Raises:
        BatchlrError: for facts damaged in the storage.
    """
    record = study.user_attrs.get(DATA_ATTR)
    return None if record is None else DataFacts.from_record(record)


def save_noise_scale(study: optuna.Study, measurement: Mapping[str, Any]) -> None:
    """Keep a noise-scale ``measurement`` (``noise_scale`` with how it was taken) with the study."""
    study.set_user_attr(NOISE_ATTR, dict(measurement))


def measured_noise_scale(study: optuna.Study) -> float | None:
    """B_simple as ``noise-scale --study`` last measured it; None where it never ran (or the
    stored measurement is damaged, which a new measurement replaces)."""
    record = study.user_attrs.get(NOISE_ATTR)
    value: Any = record.get("noise_scale") if isinstance(record, Mapping) else None
    return float(value) if is_finite_number(value) and value > 0 else None


def save_throughput(study: optuna.Study, record: Mapping[str, Any]) -> None:
    """Keep a ``batchlr throughput`` measurement (device, timings, recommendation) with the study."""
    study.set_user_attr(THROUGHPUT_ATTR, dict(record))


def measured_throughput(study: optuna.Study) -> dict[str, Any] | None:
    """The last ``batchlr throughput`` measurement as stored, None where it never ran."""
    record = study.user_attrs.get(THROUGHPUT_ATTR)
    return dict(record) if isinstance(record, Mapping) else None


class Stop(NamedTuple):
    """Why ``--stop auto`` ended a run of a study, or found it done before the run's first trial."""

    finished_trials: int
    """Complete and pruned trials then."""
    reason: str
    next_trial: int
    """The number of the first trial it did not start (the study's trial count then)."""


def save_stop(study: optuna.Study, stop: Stop) -> None:
    """Keep why ``--stop auto`` ended a run with the study."""
    study.set_user_attr(
        STOPPED_ATTR,
        {"trials": stop.finished_trials, "reason": stop.reason, "next_trial": stop.next_trial},
    )


def last_stop(study: optuna.Study) -> Stop | None:
    """The last ``--stop auto`` stop of ``study``; None where none was kept, or one of the
    form before ``next_trial`` was kept with it."""
    record = study.user_attrs.get(STOPPED_ATTR)
    if (
        isinstance(record, Mapping)
        and is_whole_number(record.get("trials"))
        and is_whole_number(record.get("next_trial"))
    ):
        return Stop(record["trials"], str(record.get("reason")), record["next_trial"])
    return None
