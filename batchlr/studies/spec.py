"""What defines a study, how it is stored on the study, and how a resumed run is checked against it."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

import optuna

import batchlr
from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.objectives.data import dataset_slug
from batchlr.objectives.folds import FoldAssignment
from batchlr.search.space import SearchSpace

METRIC = "accuracy"
DIRECTION = "maximize"

FOLDS_ATTR = "batchlr:folds"
LABELS_ATTR = "batchlr:labels"

# Settings a resumed run must not change, with the option that sets each, for messages.
OPTION_OF = {
    "dataset": "--dataset",
    "model": "--model",
    "folds": "--folds",
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "optimizers": "--optimizers",
}


@dataclasses.dataclass(frozen=True)
class StudySpec:
    """The data, model, budget and search space every trial of a study shares.

    ``seed`` is the seed the folds and the hold-out were drawn with when the study was created.
    """

    dataset: str = "digits"
    model: str = "convnet"
    folds: int = 3
    epochs: int = 10
    space: SearchSpace = SearchSpace()
    seed: int = 0

    def settings(self) -> dict[str, Any]:
        """The settings as JSON values, keyed as in :data:`OPTION_OF` (plus the fixed momentum range)."""
        return {"dataset": self.dataset, "model": self.model, "folds": self.folds, "epochs": self.epochs, **self.space.to_dict()}

    def default_study_name(self) -> str:
        return f"{dataset_slug(self.dataset)}-{self.model.replace(':', '.')}"


def reconcile(stored: StudySpec | None, requested: StudySpec, given: Collection[str], study: str) -> StudySpec:
    """The spec a run uses: the stored one when the study exists, else the requested one.

    Settings the user gave explicitly (``given``, keys of :data:`OPTION_OF`) must match the
    stored study; the others silently take the stored values, so ``batchlr run --study S``
    resumes S as it was created.

    Raises:
        BatchlrError: naming the first setting that differs.
    """
    if stored is None:
        return requested
    old, new = stored.settings(), requested.settings()
    for key in OPTION_OF:
        if key in given and old[key] != new[key]:
            raise BatchlrUsageError(
                f"study {study!r} was created with {OPTION_OF[key]} {_show(old[key])}, not {_show(new[key])}; "
                f"drop {OPTION_OF[key]} to resume it, or choose a new --study name"
            )
    return stored


def save_spec(
    storage: optuna.storages.BaseStorage, study: str, spec: StudySpec, folds: FoldAssignment, labels_fingerprint: str
) -> None:
    """Store the spec as user attrs (shown by optuna-dashboard) and the folds as system attrs."""
    study_id = storage.get_study_id_from_name(study)
    attrs = {**spec.settings(), "seed": spec.seed, "metric": METRIC, "batchlr_version": batchlr.__version__}
    for key, value in attrs.items():
        storage.set_study_user_attr(study_id, key, value)
    storage.set_study_system_attr(study_id, FOLDS_ATTR, folds.encode())
    # Written last: load_spec treats a study without it as one being created or not batchlr's.
    storage.set_study_system_attr(study_id, LABELS_ATTR, labels_fingerprint)


def load_spec(storage: optuna.storages.BaseStorage, study: str) -> tuple[StudySpec, FoldAssignment, str] | None:
    """The stored spec, folds and labels fingerprint of ``study``; ``None`` when it does not exist.

    Raises:
        BatchlrError: when the study exists but batchlr did not create it.
    """
    try:
        study_id = storage.get_study_id_from_name(study)
    except KeyError:
        return None
    attrs = storage.get_study_user_attrs(study_id)
    system = storage.get_study_system_attrs(study_id)
    if LABELS_ATTR not in system:
        raise BatchlrError(f"study {study!r} exists but was not made by batchlr run; choose another --study name")
    spec = StudySpec(
        dataset=attrs["dataset"],
        model=attrs["model"],
        folds=int(attrs["folds"]),
        epochs=int(attrs["epochs"]),
        space=SearchSpace.from_dict(attrs),
        seed=int(attrs["seed"]),
    )
    return spec, FoldAssignment.decode(system[FOLDS_ATTR]), system[LABELS_ATTR]


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ":".join(map(str, value)) if len(value) == 2 and not isinstance(value[0], str) else ",".join(value)
    return str(value)
