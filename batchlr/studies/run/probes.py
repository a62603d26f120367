"""Diagnostics run outside a study's trials: the LR range test and the gradient noise scale.

Both train through the trials' own :class:`~batchlr.objectives.trainer.Trainer`, in a study's
regime: its data, model, precision, augmentation, label smoothing and micro-batch cap, those of
the study named, or of a new study with the options given. They train on what that study
searches: the training split less the hold-out, so neither looks at data kept for a final test
score.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from pathlib import Path

import torch

from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.files import check_writable
from batchlr.objectives.data import dataset_slug
from batchlr.objectives.probes import (
    NoiseScale,
    SeededLrRangeTests,
    seeded_lr_range_tests,
    trained_noise_scale,
)
from batchlr.objectives.trainer import Trainer
from batchlr.search.space import MOMENTUM_OPTIMIZERS, Hyperparameters, OptimizerName, offset_seed
from batchlr.studies.run.creation import RunOptions, prepare
from batchlr.studies.store.data_facts import save_noise_scale
from batchlr.studies.store.spec import StudySpec
from batchlr.studies.store.storage import open_storage
from batchlr.studies.store.stored_spec import load_spec
from batchlr.studies.store.summary import load_existing_study


@dataclasses.dataclass(frozen=True)
class Probe:
    """A trainer in a study's regime, the samples it may train on (on its device), the study's
    spec, the study's name when it exists, and the largest batch its trials can draw (the
    smallest fold's training samples)."""

    trainer: Trainer
    indices: torch.Tensor
    spec: StudySpec
    study: str | None
    largest_batch: int

    def check_batch(self, batch_size: int, option: str) -> None:
        if not 0 < batch_size <= len(self.indices):
            raise BatchlrUsageError(
                f"{option} {batch_size}: must be between 1 and the {len(self.indices)} training samples"
            )

    def title(self, what: str) -> str:
        """A figure's title: the data set, the model and ``what``."""
        return f"{dataset_slug(self.spec.dataset)}, {self.spec.model}, {what}"


def open_probe(
    requested: StudySpec,
    given: Collection[str],
    options: RunOptions,
    storage: str,
    study: str | None,
) -> Probe:
    """The probe of ``study`` in ``storage`` as it was created (settings in ``given`` taken as a
    resumed run takes them), or without one, of a new study of ``requested``.

    Raises:
        BatchlrError: when the study does not exist or its data changed.
    """
    stored = None
    if study:
        opened = open_storage(storage, access="read")
        load_existing_study(opened, study)
        stored = load_spec(opened, study)
    spec, objective = prepare(
        study or requested.default_study_name(), stored, requested, given, options
    )
    trainer = objective.trainer
    indices = torch.as_tensor(objective.folds.searched(), device=trainer.device)
    return Probe(trainer, indices, spec, study, objective.folds.smallest_train_size())


def probe_hyperparameters(
    batch_size: int, optimizer: OptimizerName, momentum: float, lr: float = 0.0
) -> Hyperparameters:
    """The probe's training settings; momentum applies to SGD and RMSProp only."""
    return Hyperparameters(
        batch_size, lr, optimizer, momentum if optimizer in MOMENTUM_OPTIMIZERS else None
    )


def run_lr_find(
    probe: Probe,
    hyperparameters: Hyperparameters,
    seed: int,
    start_lr: float,
    end_lr: float,
    lr_count: int,
    plot: Path | None = None,
) -> SeededLrRangeTests:
    """``batchlr lr-find``: the LR range test for one batch size and optimizer
    (``hyperparameters.lr`` is ignored) with ``seed`` and the next, the first seed's curve
    saved as a PNG to ``plot`` if given."""
    if plot:
        check_writable(plot)
    probe.check_batch(hyperparameters.batch_size, "--batch-size")
    if not 0 < start_lr < end_lr:
        raise BatchlrUsageError(
            f"--start-lr {start_lr:g} must be positive and below --end-lr {end_lr:g}"
        )
    result = seeded_lr_range_tests(
        probe.trainer,
        probe.indices,
        hyperparameters,
        (seed, offset_seed(seed, 1)),
        start_lr,
        end_lr,
        lr_count,
    )
    if result.diverged_at_once:
        raise BatchlrError(f"the loss diverged at once, from lr {start_lr:g}; lower --start-lr")
    if plot:
        from batchlr.studies.results.plotting import save_png
        from batchlr.studies.results.probe_figures import lr_range_figure

        what = f"{hyperparameters.optimizer}, batch {hyperparameters.batch_size}"
        save_png(lr_range_figure(result, probe.title(what)), plot)
    return result


def run_noise_scale(
    probe: Probe,
    hyperparameters: Hyperparameters,
    seed: int,
    epochs: int,
    small_batch: int,
    big_batch: int,
    repeats: int,
) -> NoiseScale:
    """``batchlr noise-scale``: B_simple at initialisation, or after ``epochs`` epochs trained
    with ``hyperparameters``; the big batch is capped at the training samples."""
    big_batch = min(big_batch, len(probe.indices))
    if not 0 < small_batch < big_batch:
        raise BatchlrUsageError(
            f"--small-batch {small_batch} must be positive and below --big-batch {big_batch}"
        )
    if epochs:
        probe.check_batch(hyperparameters.batch_size, "--batch-size")
    torch.manual_seed(seed)
    result = trained_noise_scale(
        probe.trainer,
        probe.indices,
        hyperparameters,
        seed,
        epochs,
        small_batch,
        big_batch,
        repeats,
    )
    if not result.usable:
        raise BatchlrError(
            f"the noise-scale estimate is not usable (|G|^2 {result.gradient_norm_squared:.3g}, tr(S) "
            f"{result.covariance_trace:.3g}): the gradient is buried in noise; raise --repeats or --big-batch"
        )
    return result


def remember_noise_scale(storage: str, study: str, result: NoiseScale, epochs: int) -> None:
    """Keep ``result`` with ``study``: its export then extrapolates the lr ridge up to the
    critical batch size (see :mod:`batchlr.studies.results.transfer`)."""
    opened = load_existing_study(open_storage(storage, access="write"), study)
    measurement = {
        "noise_scale": result.noise_scale,
        "critical_batch_size": result.critical_batch_size,
        "small_batch": result.small_batch,
        "big_batch": result.big_batch,
        "repeats": result.repeats,
        "epochs": epochs,
    }
    save_noise_scale(opened, measurement)
