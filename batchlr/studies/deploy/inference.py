"""Using a refit model on new data: accuracy, per class and as a confusion matrix, on any data
set batchlr reads; and the most probable classes of image files."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path
from typing import Any

import torch

from batchlr.errors import BatchlrError
from batchlr.files import check_regular_file
from batchlr.objectives.data import ImageData, check_dataset_name, load_dataset, load_test_split
from batchlr.objectives.files import IMG_EXTENSIONS, walk_image_files
from batchlr.studies.deploy.model_file import TrainedModel, check_channels, image_names

CHUNK = 256
"""Images per forward pass."""


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """A model's accuracy on ``images`` images of ``dataset`` (its ``split``): overall, per class,
    and the confusion matrix (rows: true class, columns: predicted, in the model's class order).
    ``note`` says what the score means beyond that, e.g. that the model trained on the images."""

    dataset: str
    split: str
    images: int
    accuracy: float
    classes: list[str]
    confusion: list[list[int]]
    note: str | None = None

    @property
    def per_class(self) -> dict[str, dict[str, float | int]]:
        """Each class present: its images and the fraction of them predicted right."""
        return {
            name: {"images": sum(row), "accuracy": row[index] / sum(row)}
            for index, (name, row) in enumerate(zip(self.classes, self.confusion, strict=True))
            if sum(row)
        }

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "per_class": self.per_class}


@dataclasses.dataclass(frozen=True)
class EvaluationSet:
    """Images (uint8, the model's input shape) and labels (the model's class indices) to score a
    model on, which ``split`` of the data set they are, and a ``note`` for the reader, or None."""

    images: torch.Tensor
    labels: torch.Tensor
    split: str
    note: str | None = None


def evaluation_data(
    model: TrainedModel, dataset: str, data_dir: Path, cache_dir: Path | None
) -> EvaluationSet:
    """The images of ``dataset`` to score the model on: its official test split where it has one
    (read alone: its training files are not needed); else, when it is the data set the model
    was trained on, wherever it is now (see :func:`_trained_on`), the hold-out its study set
    aside (the model trained on the rest); else all its images.

    Raises:
        BatchlrError: when the data set holds a class the model does not know, or has channels
            the model's cannot be converted from (see :func:`check_channels`).
    """
    _, height, width = model.input_shape
    test = load_test_split(dataset, data_dir, (height, width))
    if test is not None:
        return _scored(model, test, None, "official test split")
    data = load_dataset(dataset, data_dir, (height, width), cache_dir)
    if not _trained_on(model, dataset, data):
        return _scored(model, data, None, "all images")
    holdout = model.info.get("holdout")
    if holdout is None:  # a model file from before batchlr recorded the hold-out
        note = (
            f"warning: the model was trained on {dataset}, and this model file does not say which "
            "of its images were held out: this accuracy counts images it trained on; refit to "
            "score the hold-out alone"
        )
        return _scored(model, data, None, "all images", note)
    held = set(holdout)
    chosen = torch.tensor(
        [index for index, name in enumerate(image_names(data)) if name in held], dtype=torch.long
    )
    note = (
        f"note: the model was trained on {dataset}: only the {len(chosen):,} images of the "
        f"hold-out its study set aside are scored, not the {len(data.images) - len(chosen):,} "
        "others, which trained it or were added since"
    )
    if not len(chosen):
        raise BatchlrError(
            f"{dataset} no longer holds any image of the hold-out the model was scored on, and the "
            "model trained on the others; evaluate it on another data set"
        )
    return _scored(model, data, chosen, "hold-out set aside when the study was created", note)


def _trained_on(model: TrainedModel, dataset: str, data: ImageData) -> bool:
    """Whether ``data``, read as ``dataset``, is what the model trained on: the data set its study
    named (the same folder, images added since included), or the same images, names and classes
    wherever they are (a folder copied or moved), as the ``data_fingerprint`` refit records says.
    A model file without that fingerprint (before batchlr wrote it) is judged by name alone."""
    if check_dataset_name(dataset) == model.info.get("dataset"):
        return True
    recorded = model.info.get("data_fingerprint")
    return recorded is not None and recorded == data.content_fingerprint()


def _scored(
    model: TrainedModel,
    data: ImageData,
    indices: torch.Tensor | None,
    split: str,
    note: str | None = None,
) -> EvaluationSet:
    """The images of ``data`` at ``indices`` (None: all, not copied), in the model's channels,
    with their labels as the model's class indices."""
    images, labels = (
        (data.images, data.labels)
        if indices is None
        else (data.images[indices], data.labels[indices])
    )
    return EvaluationSet(
        with_channels(images, model.input_shape[0], f"{data.name} has"),
        _model_labels(data, labels, model),
        split,
        note,
    )


def _model_labels(data: ImageData, labels: torch.Tensor, model: TrainedModel) -> torch.Tensor:
    unknown = [name for name in data.classes if name not in model.classes]
    if unknown:
        raise BatchlrError(
            f"{data.name} holds classes the model was not trained on: {', '.join(unknown[:5])}"
            f"{' ...' if len(unknown) > 5 else ''}; the model knows {', '.join(model.classes)}"
        )
    return torch.tensor([model.classes.index(name) for name in data.classes])[labels]


def with_channels(images: torch.Tensor, channels: int, source: str) -> torch.Tensor:
    """uint8 N×C×H×W images with ``channels`` channels: grey repeated to RGB, or RGB made grey as
    PIL does. ``source`` completes the error of :func:`check_channels`, e.g. "mnist has".

    Raises:
        BatchlrError: for any other change of channels.
    """
    check_channels(channels, images.shape[1], source)
    if images.shape[1] == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1)
    # ITU-R 601-2 luma, PIL's "L" conversion
    weights = torch.tensor([299, 587, 114]).view(1, 3, 1, 1)
    return (
        ((images.long() * weights).sum(dim=1, keepdim=True) + 500)
        .div(1000, rounding_mode="floor")
        .to(torch.uint8)
    )


def _logits(model: TrainedModel, images: torch.Tensor) -> torch.Tensor:
    """The model's logits for ``images``, checked finite: weights finite but huge can still
    overflow, and a NaN would print as a probability or count as a prediction.

    Raises:
        BatchlrError: when any logit is NaN or infinite.
    """
    logits: torch.Tensor = model(images.to(model.scale.device))
    if not torch.isfinite(logits).all():
        raise BatchlrError(
            "the model's outputs overflow to NaN or infinity on these images: its weights are unusable; refit it"
        )
    return logits


@torch.no_grad()
def evaluate_model(model: TrainedModel, data: EvaluationSet, dataset: str) -> Evaluation:
    """Score ``model`` on ``data`` in passes of :data:`CHUNK`, on the model's device."""
    predicted = torch.cat(
        [_logits(model, chunk).argmax(dim=1).cpu() for chunk in data.images.split(CHUNK)]
    )
    count, labels = len(model.classes), data.labels
    confusion = torch.bincount(labels * count + predicted, minlength=count * count).view(
        count, count
    )
    accuracy = float((predicted == labels).float().mean()) if len(labels) else 0.0
    return Evaluation(
        dataset,
        data.split,
        len(labels),
        accuracy,
        list(model.classes),
        confusion.tolist(),
        data.note,
    )


def image_paths(arguments: list[Path]) -> list[Path]:
    """The image files named, and those under the folders named, found as training finds an
    image folder's (:func:`~batchlr.objectives.files.image_files.walk_image_files`: links followed,
    each file once), in the order of ``arguments``.

    Raises:
        BatchlrError: for a path that does not exist, cannot be read or is not a regular file
            or folder (a FIFO, which would block its reader), or no images at all.
    """
    is_folder = [_is_folder(argument) for argument in arguments]
    folders = [
        str(argument) for argument, folder in zip(arguments, is_folder, strict=True) if folder
    ]
    try:
        under = walk_image_files(folders)
    except OSError as error:
        raise BatchlrError(
            f"cannot read {error.filename}: {error.strerror}; make it readable or leave it out"
        ) from error
    in_folder: list[list[Path]] = [[] for _ in folders]
    for file in under:
        in_folder[file.label].append(Path(file.path))
    next_folder = iter(in_folder)
    paths: list[Path] = []
    for argument, folder in zip(arguments, is_folder, strict=True):
        paths.extend(next(next_folder) if folder else [check_regular_file(argument, "image file")])
    if not paths:
        raise BatchlrError(
            f"no images ({', '.join(IMG_EXTENSIONS)}) in {', '.join(map(str, arguments))}"
        )
    return paths


def _is_folder(argument: Path) -> bool:
    """Whether ``argument`` is a folder (links followed), else a file of some kind.

    Raises:
        BatchlrError: when nothing is there (either was meant: ``x/`` names a folder), or it cannot be read.
    """
    try:
        return stat.S_ISDIR(argument.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError) as error:
        raise BatchlrError(
            f"{argument}: no such file or folder; give image files or folders of them"
        ) from error
    except OSError as error:
        raise BatchlrError(
            f"cannot read {argument}: {error.strerror}; make it readable or leave it out"
        ) from error


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The most probable classes of one image, most probable first, with their probabilities."""

    path: str
    top: list[tuple[str, float]]


@torch.no_grad()
def predict(model: TrainedModel, paths: list[Path], top_k: int = 3) -> list[Prediction]:
    """The ``top_k`` classes of each image at ``paths``, read and classified :data:`CHUNK` at a time."""
    predictions = []
    for start in range(0, len(paths), CHUNK):
        chunk = paths[start : start + CHUNK]
        probabilities = _logits(model, model.load_images(chunk)).softmax(dim=1)
        values, indices = probabilities.topk(min(top_k, len(model.classes)), dim=1)
        for path, row_values, row_indices in zip(
            chunk, values.tolist(), indices.tolist(), strict=True
        ):
            predictions.append(
                Prediction(
                    str(path),
                    [
                        (model.classes[index], value)
                        for index, value in zip(row_indices, row_values, strict=True)
                    ],
                )
            )
    return predictions
