"""Building a study's spec and objective, and creating a new study whole: the options of the
process that builds it (:class:`RunOptions`), the folds it draws or checks, the lr range that
``--lr auto`` finds, and the one write that creates it.

Kept apart from :mod:`batchlr.studies.run.lifecycle`, which opens studies and runs trials, so that
``batchlr refit`` builds a study's objective without the trial-running machinery.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.storages import BaseStorage

from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.objectives.data import (
    FoldAssignment,
    ImageData,
    assign_folds,
    load_dataset,
    split_duplicates,
)
from batchlr.objectives.micro_batches import resolve_cap
from batchlr.objectives.objective import CrossValidationObjective
from batchlr.objectives.probes import (
    SEARCH_RANGE,
    largest_micro_batch,
    seeded_lr_range_tests,
    trained_noise_scale,
)
from batchlr.objectives.settings import FuseChoice
from batchlr.objectives.trainer import Trainer
from batchlr.objectives.training import resolve_device
from batchlr.search.samplers import bounded_grid
from batchlr.search.space import Hyperparameters, SearchSpace, default_momentum, offset_seed
from batchlr.studies import render
from batchlr.studies.store.data_facts import DataFacts, save_data_facts
from batchlr.studies.store.spec import StudySpec, created_lr, reconcile
from batchlr.studies.store.storage import DEFAULT_HEARTBEAT, LiveStorage
from batchlr.studies.store.stored_spec import LABELS_ATTR, save_spec
from batchlr.studies.store.study_creation import create_study_from


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How this process runs trials; none of it is part of the study's definition."""

    seed: int = 0
    """Seeds this run's sampler and model initialisation (and a new study's folds, as ``StudySpec.seed``)."""
    device: str = "auto"
    lr_auto: bool = False
    """For a new study, run the LR range test and search around its suggestion (see
    :data:`SEARCH_RANGE`)."""
    heartbeat: int | None = DEFAULT_HEARTBEAT
    """Seconds between a running trial's heartbeats; ``None`` turns heartbeats off."""
    command_line: str = ""
    """The command that started the run (passwords masked), for the study's dashboard note."""
    cache_dir: Path | None = None
    """Where decoded image folders are cached; ``None``: the user's cache home."""
    fuse_folds: FuseChoice = "auto"
    """``--fuse-folds``: train a trial's folds as one fused model (auto: on CUDA)."""
    compile: bool = False
    """``--compile``: torch.compile the forward pass."""
    stop_auto: bool = False
    """``--stop auto``: end the run once further trials are not expected to beat the best by
    more than the cross-validation noise, and run none where that holds already (see
    :mod:`batchlr.studies.run.stopping`)."""


def prepare(
    name: str,
    stored: tuple[StudySpec, FoldAssignment, str] | None,
    requested: StudySpec,
    given: Collection[str],
    options: RunOptions,
) -> tuple[StudySpec, CrossValidationObjective]:
    """The spec and objective for the stored study, or for a new one from ``requested``.

    The spec comes back as the run uses it: the data directory absolute, the micro-batch cap
    resolved, and for a new study under ``--lr auto`` the lr range found.
    """
    spec = reconcile(stored[0] if stored else None, requested, given, name)
    if options.lr_auto and stored and not stored[0].lr_find:
        raise BatchlrUsageError(
            f"study {name!r} was created with --lr {created_lr(stored[0])}, not auto; drop "
            "--lr auto to resume it, or choose a new --study name"
        )
    if "grid_points" in given and spec.grid_points and spec.sampler != "grid":
        raise BatchlrUsageError(f"--grid-points goes with --sampler grid, not {spec.sampler}")
    if options.stop_auto and len(spec.directions) > 1:
        remedy = (
            f"study {name!r} has two (accuracy,time): drop --stop auto to resume it"
            if stored
            else "drop it or --objectives accuracy,time"
        )
        raise BatchlrUsageError(f"--stop auto judges one objective; {remedy}")
    if spec.sampler == "grid":
        bounded_grid(spec.space, spec.grid_points)  # before anything loads or is stored
    spec = dataclasses.replace(spec, data_dir=spec.data_dir.expanduser().resolve())
    device = resolve_device(options.device)
    data = load_dataset(spec.dataset, spec.data_dir, spec.image_size, options.cache_dir, device)
    if stored:
        folds = _checked_folds(stored[1], stored[2], data, name)
    else:
        folds = assign_folds(
            data.labels.numpy(),
            spec.folds,
            spec.seed,
            holdout=data.test_images is None,
            classes=data.classes,
        )
    space = spec.space.clip_batch_size(folds.smallest_train_size())
    searched = folds.searched()
    trainer = Trainer.on(
        data, searched, spec.model, spec.training, device, options.fuse_folds, options.compile
    )
    stored_cap = stored[0].training.max_micro_batch if stored else None
    cap = resolve_cap(
        spec.training.max_micro_batch,
        stored_cap,
        lambda: largest_micro_batch(trainer, space.batch_size[1]),
    )
    trainer = trainer.with_cap(cap)
    spec = dataclasses.replace(spec, training=trainer.settings)
    scaling = spec.space.lr_scaling
    if scaling.rule == "noise" and scaling.noise_scale is None:
        measured = _noise_scale(
            space, trainer, torch.as_tensor(searched, device=device), options.seed
        )
        space = dataclasses.replace(
            space, lr_scaling=dataclasses.replace(scaling, noise_scale=measured)
        )
        spec = dataclasses.replace(
            spec, space=dataclasses.replace(spec.space, lr_scaling=space.lr_scaling)
        )
    if options.lr_auto and not stored:
        searched_on_device = torch.as_tensor(searched, device=device)
        spec = _with_found_lr(spec, space, trainer, searched_on_device, options.seed)
        space = spec.space.clip_batch_size(folds.smallest_train_size())
    if spec.sampler in ("grid", "gp"):
        # A grid is one list of values per param, and the GP models only params whose range
        # every trial shares: both draw every optimizer's lr from the hull of their ranges.
        space = dataclasses.replace(space, lr=space.lr_hull)
    return spec, CrossValidationObjective(trainer, data, folds, space, options.seed)


def create_study(
    storage: LiveStorage,
    name: str,
    spec: StudySpec,
    objective: CrossValidationObjective,
    command_line: str,
) -> bool:
    """Create the study with its spec, folds, data facts, metric names and note, all at once;
    False when another process created one of that name first."""
    draft = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=draft, study_name=name, directions=spec.directions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(spec.metric_names)
    note = render.dashboard_note(spec, objective, command_line)
    save_dashboard_note(draft, draft.get_study_id_from_name(name), note)
    data, normalisation = objective.data, objective.trainer.images.normalisation
    save_spec(draft, name, spec, objective.folds, data.labels_fingerprint())
    facts = DataFacts(data.input_shape, data.num_classes, normalisation.mean, normalisation.std)
    save_data_facts(draft, name, facts)
    return create_study_from(storage, draft, name, LABELS_ATTR)


NOTE_CHUNK = 2045
"""The characters of a note that optuna-dashboard keeps in one study attribute."""


def save_dashboard_note(storage: BaseStorage, study_id: int, body: str) -> None:
    """The first note of a new study, stored as ``optuna_dashboard.save_note`` stores it:
    importing optuna_dashboard takes a second (scikit-learn, for its importance view), a
    quarter of every run's start."""
    storage.set_study_system_attr(study_id, "dashboard:note_ver", 1)
    for start in range(0, len(body), NOTE_CHUNK):
        key = f"dashboard:note_str:{start // NOTE_CHUNK}"
        storage.set_study_system_attr(study_id, key, body[start : start + NOTE_CHUNK])


def duplicates_warning(objective: CrossValidationObjective) -> str | None:
    """What the process that creates a study says when its folds split identical images
    (see :func:`render.split_duplicates_warning`), or None."""
    return render.split_duplicates_warning(
        split_duplicates(objective.data.images, objective.folds.fold_of), objective.data.sources
    )


NOISE_BATCHES = (32, 1024)
"""The small and big batch of the noise scale a ``--lr-scaling noise`` study measures when it is
created (the big one at most a fold's training samples), as ``batchlr noise-scale`` defaults."""
NOISE_REPEATS = 20


def _noise_scale(space: SearchSpace, trainer: Trainer, searched: torch.Tensor, seed: int) -> float:
    """B_simple at initialisation, in the trials' regime, for ``--lr-scaling noise``.

    Raises:
        BatchlrError: when the estimate is not usable (the gradient buried in noise).
    """
    big = min(NOISE_BATCHES[1], space.batch_size[1])
    small = min(NOISE_BATCHES[0], big // 2)
    if small >= 1:
        optimizer = space.optimizers[0]
        hyperparameters = Hyperparameters(big, 0.0, optimizer, default_momentum(optimizer))
        torch.manual_seed(seed)
        result = trained_noise_scale(
            trainer, searched, hyperparameters, seed, 0, small, big, NOISE_REPEATS
        )
    if small < 1 or not result.usable:
        raise BatchlrError(
            f"--lr-scaling noise: the gradient noise scale measured with batches {small} and {big} "
            "is not usable (the gradient is buried in noise); use --lr-scaling linear or sqrt"
        )
    return result.noise_scale


def _with_found_lr(
    spec: StudySpec, space: SearchSpace, trainer: Trainer, searched: torch.Tensor, seed: int
) -> StudySpec:
    """``spec`` searching, for each optimizer, lr (or base_lr) over :data:`SEARCH_RANGE` of
    the LR range test's suggestion for it, the tests trained as the study's trials will be,
    with two seeds each (see :class:`~batchlr.objectives.probes.SeededLrRangeTests`).

    The tests run at the reference batch size under an LR scaling rule, so that each
    suggestion is a base_lr, and else at the geometric middle of the batch range of
    ``space``, the study's with its batch sizes clipped to the folds.

    Raises:
        BatchlrError: when a test's loss diverged at once.
    """
    if space.lr_scaling.rule != "none":
        batch_size = min(space.lr_scaling.reference_batch_size, space.batch_size[1])
    else:
        batch_size = round(math.sqrt(space.batch_size[0] * space.batch_size[1]))
    ranges: dict[str, tuple[float, float]] = {}
    records: dict[str, dict[str, Any]] = {}
    for optimizer in space.optimizers:
        momentum = default_momentum(optimizer)
        hyperparameters = Hyperparameters(batch_size, 0.0, optimizer, momentum)
        tests = seeded_lr_range_tests(
            trainer, searched, hyperparameters, (seed, offset_seed(seed, 1))
        )
        if tests.diverged_at_once:
            raise BatchlrError(
                f"--lr auto: the LR range test's loss diverged at once with {optimizer} at batch "
                f"{batch_size}; give the range yourself with --lr MIN:MAX"
            )
        # The test found an lr for its batch size; under a scaling rule the range is of base_lr.
        center = tests.suggested_lr / space.lr_scaling.lr(1.0, batch_size, optimizer)
        ranges[optimizer] = (center * SEARCH_RANGE[0], center * SEARCH_RANGE[1])
        records[optimizer] = {
            "suggested_lr": tests.suggested_lr,
            "spread": tests.spread,
            "loss_drop": tests.loss_drop,
            "batch_size": batch_size,
            "momentum": momentum,
        }
    return dataclasses.replace(
        spec, space=dataclasses.replace(spec.space, lr_ranges=ranges), lr_find=records
    )


def _checked_folds(
    folds: FoldAssignment, fingerprint: str, data: ImageData, study: str
) -> FoldAssignment:
    """The stored folds, once the data set is known to be the one they were drawn on."""
    if len(folds.fold_of) != len(data.labels) or fingerprint != data.labels_fingerprint():
        raise BatchlrError(
            f"study {study!r} was created on different {data.name} data ({len(folds.fold_of)} samples, "
            f"now {len(data.labels)}); point --data-dir at the original data or choose a new --study name"
        )
    return folds
