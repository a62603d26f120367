"""Creating, resuming and running studies."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from batchlr.errors import BatchlrError
from batchlr.objectives.data import ImageData, load_dataset
from batchlr.objectives.device import resolve_device
from batchlr.objectives.folds import HOLDOUT, FoldAssignment, assign_folds
from batchlr.objectives.memory import largest_micro_batch
from batchlr.objectives.models import resolve_model
from batchlr.objectives.objective import CrossValidationObjective, TrainingSettings
from batchlr.search.pruners import make_pruner
from batchlr.search.samplers import make_sampler
from batchlr.search.space import DEFAULT_MOMENTUM, MOMENTUM_OPTIMIZERS, Hyperparameters, SearchSpace
from batchlr.studies.probes import ProbeData, find_lr
from batchlr.studies.spec import METRIC_NAMES, StudySpec, load_spec, reconcile, save_spec
from batchlr.studies.storage import open_storage

MICRO_BATCH_ATTR = "max_micro_batch"
LR_FIND_ATTR = "lr_find"

TrialCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How this process runs trials; none of it is part of the study's definition."""

    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 0
    device: str = "auto"
    data_dir: Path = Path("data")
    max_micro_batch: int | str | None = None
    """A cap on the samples per forward/backward pass, ``"auto"`` to probe the device, or ``None``."""
    lr_auto: bool = False
    """For a new study, run the LR range test and search one decade either side of its suggestion."""


@dataclasses.dataclass(frozen=True)
class OpenStudy:
    """A study ready to run trials in this process, with the objective built for it."""

    study: optuna.Study
    spec: StudySpec
    objective: CrossValidationObjective
    previous_trials: int

    def optimize(self, n_trials: int | None, timeout: float | None, callbacks: Sequence[TrialCallback] = ()) -> None:
        """Run trials until ``n_trials`` have run here or ``timeout`` seconds have passed."""
        self.study.optimize(self.objective, n_trials=n_trials, timeout=timeout, callbacks=list(callbacks))


def open_study(
    storage_url: str, study_name: str | None, requested: StudySpec, given: Collection[str], options: RunOptions
) -> OpenStudy:
    """Create the study, or resume the one of that name, and build its objective.

    ``given`` names the settings of ``requested`` the user chose explicitly; a resumed study
    keeps its stored settings and rejects explicit ones that differ (see :func:`reconcile`).
    A new study is written only once the data, folds, model and device are known to work.
    """
    storage = open_storage(storage_url, create=True)
    name = study_name or requested.default_study_name()
    stored = load_spec(storage, name)
    stored_attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(name)) if stored else {}
    spec = reconcile(stored[0] if stored else None, requested, given, name)
    data = load_dataset(spec.dataset, options.data_dir.expanduser())
    if stored:
        folds = _checked_folds(stored[1], stored[2], data, name)
    else:
        folds = assign_folds(data.labels.numpy(), spec.folds, spec.seed, holdout=data.test_images is None)
    device = resolve_device(options.device)
    lr_found = None
    if options.lr_auto and not stored:
        spec, lr_found = _with_found_lr(spec, data, folds, device, options.seed)
    space = spec.space.clip_batch_size(folds.smallest_train_size())
    settings = TrainingSettings(
        budget=spec.training_budget(),
        schedule=spec.schedule,
        warmup_epochs=spec.warmup,
        max_micro_batch=_micro_batch_cap(options.max_micro_batch, stored_attrs, spec, data, device, space),
        objectives=spec.objectives,
    )
    objective = CrossValidationObjective(data, folds, space, spec.model, settings, device, options.seed)
    previous_trials = len(storage.get_all_trials(storage.get_study_id_from_name(name))) if stored else 0
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=spec.directions(),
        # Offsetting the seed by the trials already run keeps a resumed run from repeating them.
        sampler=make_sampler(options.sampler, space, options.seed + previous_trials),
        pruner=make_pruner(options.pruner, settings.budget.round_count),
        load_if_exists=True,
    )
    if not stored:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([METRIC_NAMES[objective_name] for objective_name in spec.objectives])
        save_spec(storage, name, spec, folds, data.labels_fingerprint())
        if lr_found:
            study.set_user_attr(LR_FIND_ATTR, lr_found)
    if options.max_micro_batch == "auto":
        study.set_user_attr(MICRO_BATCH_ATTR, settings.max_micro_batch)
    return OpenStudy(study, spec, objective, previous_trials)


def _with_found_lr(
    spec: StudySpec, data: ImageData, folds: FoldAssignment, device: torch.device, seed: int
) -> tuple[StudySpec, dict[str, Any]]:
    """``spec`` searching lr (or base_lr) one decade either side of the LR range test's suggestion.

    The test runs at the reference batch size under an LR scaling rule, so that the
    suggestion is a base_lr, and else at the geometric middle of the batch range, with the
    first optimizer of the search space.
    """
    space = spec.space.clip_batch_size(folds.smallest_train_size())
    if space.lr_scaling.rule != "none":
        batch_size = min(space.lr_scaling.reference_batch_size, space.batch_size[1])
    else:
        batch_size = round(math.sqrt(space.batch_size[0] * space.batch_size[1]))
    optimizer = space.optimizers[0]
    momentum = DEFAULT_MOMENTUM if optimizer in MOMENTUM_OPTIMIZERS else None
    hyperparameters = Hyperparameters(batch_size=batch_size, lr=0.0, optimizer=optimizer, momentum=momentum)
    probe = ProbeData.on(data, np.flatnonzero(folds.fold_of != HOLDOUT), device)
    suggested = find_lr(probe, spec.model, hyperparameters, seed).suggested_lr
    record = {"suggested_lr": suggested, "batch_size": batch_size, "optimizer": optimizer, "momentum": momentum}
    return dataclasses.replace(spec, space=dataclasses.replace(spec.space, lr=(suggested / 10, suggested * 10))), record


def _micro_batch_cap(
    requested: int | str | None,
    stored_attrs: dict[str, Any],
    spec: StudySpec,
    data: ImageData,
    device: torch.device,
    space: SearchSpace,
) -> int | None:
    """The micro-batch cap: as given, or for ``auto`` the one stored on the study, else probed once."""
    if requested != "auto":
        return requested
    if MICRO_BATCH_ATTR in stored_attrs:
        return int(stored_attrs[MICRO_BATCH_ATTR])
    factory = resolve_model(spec.model)
    return largest_micro_batch(factory, data.input_shape, data.num_classes, device, space.batch_size[1])


def _checked_folds(folds: FoldAssignment, fingerprint: str, data: ImageData, study: str) -> FoldAssignment:
    """The stored folds, once the data set is known to be the one they were drawn on."""
    if len(folds.fold_of) != len(data.labels) or fingerprint != data.labels_fingerprint():
        raise BatchlrError(
            f"study {study!r} was created on different {data.name} data ({len(folds.fold_of)} samples, "
            f"now {len(data.labels)}); point --data-dir at the original data or choose a new --study name"
        )
    return folds
