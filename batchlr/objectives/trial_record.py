"""What batchlr stores on a trial, as one typed record over the trial's user attrs.

Each field of :class:`TrialRecord` is a user attr, stored under the field's name, and this
module is the only code that knows those names: the objective, the study lifecycle and the
retries write a trial's attrs through a record, and everything that shows, exports, plots or
retries a trial reads them through one. A new per-trial value is a field here, the line that
fills it, and the lines that show it (``batchlr show --json`` prints every field unasked).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """A trial's user attrs, each field None while the trial lacks it.

    A trial gains its attrs in stages: ``worker`` when it starts, the set-up (``lr`` to
    ``accumulation_steps``) once its models are built, the results (``fold_scores`` to
    ``seconds_per_epoch``) when it completes or is pruned after a round, and ``reason`` when
    it stops early. A record written at one stage holds that stage's fields and None for the
    rest (see :meth:`write`). Trials of batchlr 0.1.0 lack ``precision``, ``fused_folds`` and
    ``fold_curves``; a trial that ends before its first round lacks every result.

    The fields are in the order the objective writes them, which is the order the storage
    keeps them in and ``batchlr show --json`` prints them in.
    """

    worker: dict[str, Any] | None = None
    """Where the trial runs: ``host``, ``pid``, ``pid_space`` (the boot and pid namespace the
    pid is numbered in, or None) and ``device``, so that a worker that died can
    be recognised (see :func:`batchlr.studies.store.retries.fail_orphaned_trials`)."""
    lr: float | None = None
    """The learning rate trained with, after any scaling with the batch size (the param
    ``lr`` may be the base rate of the scaling rule)."""
    param_count: int | None = None
    device: str | None = None
    precision: str | None = None
    """``fp32``, ``bf16`` or ``fp16``."""
    fused_folds: bool | None = None
    """Whether the folds trained as one fused model (torch.func) rather than one by one."""
    steps_per_epoch: int | None = None
    optimizer_steps: int | None = None
    """Optimizer steps of the whole budget, per fold."""
    samples_seen: int | None = None
    """Training samples of the whole budget, per fold."""
    micro_batch: int | None = None
    """Samples in the largest micro-batch; the batch size where nothing is accumulated."""
    accumulation_steps: int | None = None
    """Forward/backward passes per optimizer step."""
    fold_scores: list[float] | None = None
    """Each fold's validation accuracy after the last round run; nan for a fold whose
    training diverged. Stored scores that are not a list of numbers (a damaged study, or
    attrs written by other code) read as ``[]``."""
    fold_curves: list[list[float]] | None = None
    """Each round's fold scores, round by round."""
    train_accuracy: float | None = None
    """Mean over folds of the training accuracy in the last round run."""
    generalization_gap: float | None = None
    """``train_accuracy`` less the mean fold score."""
    rounds_run: int | None = None
    train_images: int | None = None
    """Training images of every fold over the rounds run: what the trial cost, pruned or not."""
    train_seconds: float | None = None
    """Seconds spent training, summed over rounds: without validation or set-up, unlike the
    trial's wall-clock time."""
    images_per_second: float | None = None
    """Training images per second, over every fold."""
    seconds_per_epoch: float | None = None
    """Training seconds of one epoch of one fold."""
    reason: str | None = None
    """Why the trial stopped early: ``diverged``, ``pruned``, ``oom``, ``interrupted`` or
    ``worker lost``."""

    @classmethod
    def from_trial(cls, trial: FrozenTrial) -> TrialRecord:
        """The record of ``trial``'s user attrs (see :meth:`from_attrs`)."""
        return cls.from_attrs(trial.user_attrs)

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> TrialRecord:
        """The record of a trial's user attrs ``attrs``: a field is None where its attr is
        absent, and attrs that are no field (other code's) are left out.

        Values are taken as stored, with the types batchlr stores them with; only
        ``fold_scores`` is checked, since a study read from elsewhere may hold anything there
        and its readers compute with every score.
        """
        values = {field.name: attrs.get(field.name) for field in dataclasses.fields(cls)}
        if "fold_scores" in attrs:
            values["fold_scores"] = _scores(attrs["fold_scores"])
        return cls(**values)

    def to_attrs(self) -> dict[str, Any]:
        """The user attrs this record holds: its fields that are not None, by name."""
        return {
            field.name: value
            for field in dataclasses.fields(self)
            if (value := getattr(self, field.name)) is not None
        }

    def write(self, trial: optuna.Trial) -> None:
        """Store :meth:`to_attrs` on ``trial``; attrs of fields that are None here stay as they
        are, so each stage of a trial writes its own record."""
        for key, value in self.to_attrs().items():
            trial.set_user_attr(key, value)


def _scores(stored: Any) -> list[float]:
    """``stored`` fold scores as floats, or ``[]`` when they are not a list of numbers."""
    if not isinstance(stored, list) or not all(
        isinstance(score, (int, float)) and not isinstance(score, bool) for score in stored
    ):
        return []
    return [float(score) for score in stored]
