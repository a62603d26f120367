"""What defines a study, how it is stored on the study, and how a resumed run is checked against it."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Collection
from typing import Any

import optuna

import batchlr
from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.objectives.data import check_dataset_name, dataset_slug
from batchlr.objectives.folds import FoldAssignment
from batchlr.objectives.models import resolve_model
from batchlr.objectives.training import Budget
from batchlr.search.space import SearchSpace

METRIC = "accuracy"
# Optuna directions and metric names for each entry of --objectives.
DIRECTIONS = {"accuracy": "maximize", "time": "minimize"}
METRIC_NAMES = {"accuracy": "accuracy", "time": "train_seconds"}

FOLDS_ATTR = "batchlr:folds"
SPEC_WAIT_SECONDS = 30
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
    "lr_scaling": "--lr-scaling",
    "reference_batch_size": "--reference-batch-size",
    "budget": "--budget",
    "steps": "--steps",
    "schedule": "--schedule",
    "warmup": "--warmup",
    "objectives": "--objectives",
}


@dataclasses.dataclass(frozen=True)
class StudySpec:
    """The data, model, training and search space every trial of a study shares.

    ``seed`` is the seed the folds and the hold-out were drawn with when the study was created.
    Under ``budget="steps"`` each fold trains ``steps`` optimizer steps and ``epochs`` is unused.
    """

    dataset: str = "digits"
    model: str = "convnet"
    folds: int = 3
    epochs: int = 10
    space: SearchSpace = SearchSpace()
    seed: int = 0
    budget: str = "epochs"
    steps: int | None = None
    schedule: str = "constant"
    warmup: float = 0.0
    objectives: tuple[str, ...] = ("accuracy",)

    def __post_init__(self) -> None:
        if self.budget == "steps" and not self.steps:
            raise BatchlrUsageError("--budget steps needs --steps N, the optimizer steps each fold trains")
        if self.budget == "epochs" and self.steps:
            raise BatchlrUsageError("--steps goes with --budget steps; drop it or add --budget steps")
        if not math.isfinite(self.warmup):
            raise BatchlrUsageError(f"--warmup {self.warmup}: give a number of epochs")
        if self.warmup and self.schedule == "onecycle":
            raise BatchlrUsageError("--warmup with --schedule onecycle: one-cycle warms up by itself (its first 30 % of steps); drop --warmup")
        if self.budget == "epochs" and self.warmup >= self.epochs:
            raise BatchlrUsageError(
                f"--warmup {self.warmup:g} is not shorter than --epochs {self.epochs}: the lr would never reach its value; warm up for fewer epochs"
            )
        if self.objectives not in (("accuracy",), ("accuracy", "time")):
            raise BatchlrUsageError(f"--objectives {','.join(self.objectives)}: use accuracy, or accuracy,time")

    def settings(self) -> dict[str, Any]:
        """The settings as JSON values, keyed as in :data:`OPTION_OF` (plus the fixed momentum range)."""
        return {
            "dataset": self.dataset,
            "model": self.model,
            "folds": self.folds,
            "epochs": self.epochs if self.budget == "epochs" else None,
            **self.space.to_dict(),
            "budget": self.budget,
            "steps": self.steps,
            "schedule": self.schedule,
            "warmup": self.warmup,
            "objectives": list(self.objectives),
        }

    def training_budget(self) -> Budget:
        return Budget("steps", self.steps) if self.budget == "steps" and self.steps else Budget("epochs", self.epochs)

    def directions(self) -> list[str]:
        return [DIRECTIONS[name] for name in self.objectives]

    def default_study_name(self) -> str:
        return f"{dataset_slug(self.dataset)}-{self.model.replace(':', '.')}"


def check_names(dataset: str, model: str) -> str:
    """Fail fast, before any data loads, on a data set or model name batchlr cannot resolve;
    returns the data set as a study stores it (see :func:`check_dataset_name`)."""
    resolve_model(model)
    return check_dataset_name(dataset)


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
        if key in given and _comparable(key, old[key]) != _comparable(key, new[key]):
            raise BatchlrUsageError(
                f"study {study!r} was created with {OPTION_OF[key]} {_show(old[key])}, not {_show(new[key])}; "
                f"drop {OPTION_OF[key]} to resume it, or choose a new --study name"
            )
    return stored


def _comparable(key: str, value: Any) -> Any:
    # The optimizers are a set to the search: "adam,sgd" resumes a study made with "sgd,adam".
    return sorted(value) if key == "optimizers" else value


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


def load_spec(
    storage: optuna.storages.BaseStorage, study: str, wait: float = SPEC_WAIT_SECONDS
) -> tuple[StudySpec, FoldAssignment, str] | None:
    """The stored spec, folds and labels fingerprint of ``study``; ``None`` when it does not exist.

    A study that exists without them may be one another worker is creating right now: wait
    up to ``wait`` seconds for its spec to appear.

    Raises:
        BatchlrError: when the study exists but batchlr did not create it.
    """
    try:
        study_id = storage.get_study_id_from_name(study)
    except KeyError:
        return None
    deadline = time.monotonic() + wait
    while LABELS_ATTR not in (system := storage.get_study_system_attrs(study_id)):
        # A study being created has no trials yet: batchlr saves the spec before the first.
        if time.monotonic() > deadline or storage.get_n_trials(study_id) > 0:
            raise BatchlrError(f"study {study!r} exists but was not made by batchlr run; choose another --study name")
        time.sleep(0.5)
    attrs = storage.get_study_user_attrs(study_id)
    spec = StudySpec(
        dataset=attrs["dataset"],
        model=attrs["model"],
        folds=int(attrs["folds"]),
        epochs=int(attrs["epochs"] or 0),
        space=SearchSpace.from_dict(attrs),
        seed=int(attrs["seed"]),
        budget=attrs.get("budget", "epochs"),
        steps=attrs.get("steps"),
        schedule=attrs.get("schedule", "constant"),
        warmup=float(attrs.get("warmup", 0.0)),
        objectives=tuple(attrs.get("objectives", ["accuracy"])),
    )
    return spec, FoldAssignment.decode(system[FOLDS_ATTR]), system[LABELS_ATTR]


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ":".join(map(str, value)) if len(value) == 2 and not isinstance(value[0], str) else ",".join(value)
    return "(not set)" if value is None else str(value)
