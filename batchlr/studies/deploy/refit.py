"""Retraining a study's best configuration on all its training data and scoring it on unseen data."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from batchlr.errors import BatchlrError
from batchlr.files import check_writable
from batchlr.objectives.training import DeviceImages
from batchlr.objectives.trial_record import TrialRecord
from batchlr.search.space import Hyperparameters
from batchlr.studies.deploy.best_config import versions
from batchlr.studies.deploy.model_file import image_names, model_info, save_model
from batchlr.studies.results.artifacts import Attachment, attach
from batchlr.studies.run.creation import RunOptions, prepare
from batchlr.studies.store.storage import open_storage
from batchlr.studies.store.stored_spec import load_spec
from batchlr.studies.store.summary import (
    REFIT_ATTRS,
    best_complete_trial,
    load_existing_study,
)


@dataclasses.dataclass(frozen=True)
class RefitResult:
    """The refit's test score and what it was measured on."""

    trial: int
    test_accuracy: float
    test_split: str
    train_samples: int
    test_samples: int
    seconds: float
    artifacts: Attachment
    """Whether the model file was attached to the study's artifacts, where, or why not."""


def refit_best(
    storage_url: str,
    study_name: str,
    output: Path,
    options: RunOptions,
    data_dir: Path | None = None,
    artifacts: Path | None = None,
) -> RefitResult:
    """Retrain the best trial's configuration on every training sample the folds used, for the
    study's budget, then score it on the data set's official test split, or on the hold-out
    the study set aside when it was created (the search never saw either).

    Saves a self-describing model file (see :mod:`batchlr.studies.deploy.model_file`; ``batchlr.load_model``
    reads it) to ``output``, replacing a previous file only once the new one is whole,
    and stores the score as study user attrs ``test_accuracy``, ``test_split`` and ``refit_trial``,
    and attaches the model file to the study's artifacts (see :mod:`batchlr.studies.results.artifacts`).
    Reads the data from ``data_dir``, or where the study was created from.
    """
    check_writable(output)  # before minutes of training
    storage = open_storage(storage_url, access="write")
    study = load_existing_study(storage, study_name)
    best = best_complete_trial(study)
    stored = load_spec(storage, study_name)
    assert stored is not None  # load_existing_study found the study
    requested = stored[0] if data_dir is None else dataclasses.replace(stored[0], data_dir=data_dir)
    _, objective = prepare(
        study_name, stored, requested, () if data_dir is None else ("data_dir",), options
    )
    hyperparameters = Hyperparameters.from_params(best.params, objective.space)

    started = time.perf_counter()
    torch.manual_seed(options.seed)
    trainer, device = objective.trainer, objective.trainer.device
    train = torch.as_tensor(objective.folds.searched(), device=device)
    group = trainer.fold_group(hyperparameters, [(train, train[:0])], options.seed)
    if any(result.diverged for result in trainer.rounds(group)):
        raise BatchlrError(
            f"the refit of trial {best.number} diverged (non-finite loss); refit another trial's settings"
        )

    data, normalisation = objective.data, trainer.images.normalisation
    if data.test_images is not None:
        assert data.test_labels is not None  # ImageData has both test splits or neither
        images = DeviceImages(
            data.test_images.to(device), data.test_labels.to(device), normalisation
        )
        test, split = torch.arange(len(images), device=device), "official test split"
        holdout = fingerprint = None
    else:
        images = trainer.images
        indices = objective.folds.holdout()
        test = torch.as_tensor(indices, device=device)
        split = "hold-out set aside when the study was created"
        names = image_names(data)
        holdout = [names[index] for index in indices]  # evaluate scores these alone
        # how evaluate knows this data wherever it is copied or moved
        fingerprint = data.content_fingerprint()
    accuracy = trainer.evaluate(group, [test], images).item()
    spec = stored[0]
    info = model_info(
        model=spec.model,
        input_shape=data.input_shape,
        classes=data.classes,
        mean=normalisation.mean,
        std=normalisation.std,
        image_size=list(spec.image_size) if spec.image_size else None,
        dataset=spec.dataset,
        holdout=holdout,
        data_fingerprint=fingerprint,
        study=study_name,
        trial=best.number,
        params=best.params,
        hyperparameters=dataclasses.asdict(hyperparameters),
        cv_accuracy=best.values[0],
        fold_scores=TrialRecord.from_trial(best).fold_scores or [],
        test_accuracy=accuracy,
        test_split=split,
        train_images=len(train),
        precision=group.execution.precision,
        settings={key: value for key, value in spec.to_attrs().items() if key != "data_dir"},
        versions=versions(),
    )
    save_model(output, group.models.module(0), info)
    for key, value in zip(
        REFIT_ATTRS, (accuracy, split, best.number, len(test), len(train)), strict=True
    ):
        study.set_user_attr(key, value)
    # The model is saved and scored: a store that cannot take it is a warning, not a failure.
    attached = attach(storage_url, study_name, [output], artifacts)
    return RefitResult(
        best.number, accuracy, split, len(train), len(test), time.perf_counter() - started, attached
    )
