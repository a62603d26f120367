"""Using a refit model on new data: accuracy, per class and as a confusion matrix, on any data
set batchlr reads; and the most probable classes of image files."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from batchlr.errors import BatchlrError
from batchlr.files import check_regular_file
from batchlr.objectives.data import ImageData, load_dataset
from batchlr.objectives.image_files import IMG_EXTENSIONS, walk_image_files
from batchlr.studies.model_file import TrainedModel

CHUNK = 256
"""Images per forward pass."""


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """A model's accuracy on ``images`` images of ``dataset`` (its ``split``): overall, per class,
    and the confusion matrix (rows: true class, columns: predicted, in the model's class order)."""

    dataset: str
    split: str
    images: int
    accuracy: float
    classes: list[str]
    confusion: list[list[int]]

    @property
    def per_class(self) -> dict[str, dict[str, float | int]]:
        """Each class present: its images and the fraction of them predicted right."""
        return {
            name: {"images": sum(row), "accuracy": row[index] / sum(row)}
            for index, (name, row) in enumerate(zip(self.classes, self.confusion))
            if sum(row)
        }

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "per_class": self.per_class}


def evaluation_data(model: TrainedModel, dataset: str, data_dir: Path, cache_dir: Path | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The images (uint8, the model's input shape) and labels (the model's class indices) of
    ``dataset`` to score the model on: its official test split where it has one, else all of it.

    Raises:
        BatchlrError: when the data set holds a class the model does not know.
    """
    _, height, width = model.input_shape
    data = load_dataset(dataset, data_dir, (height, width), cache_dir)
    images, labels, split = (data.test_images, data.test_labels, "official test split") if data.test_images is not None else (data.images, data.labels, "all images")
    return with_channels(images, model.input_shape[0]), _model_labels(data, labels, model), split


def _model_labels(data: ImageData, labels: torch.Tensor, model: TrainedModel) -> torch.Tensor:
    unknown = [name for name in data.classes if name not in model.classes]
    if unknown:
        raise BatchlrError(
            f"{data.name} holds classes the model was not trained on: {', '.join(unknown[:5])}"
            f"{' ...' if len(unknown) > 5 else ''}; the model knows {', '.join(model.classes)}"
        )
    return torch.tensor([model.classes.index(name) for name in data.classes])[labels]


def with_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 N×C×H×W images with ``channels`` channels: grey repeated to RGB, or RGB made grey as PIL does."""
    if images.shape[1] == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1)
    weights = torch.tensor([299, 587, 114]).view(1, 3, 1, 1)  # ITU-R 601-2 luma, PIL's "L" conversion
    return ((images.long() * weights).sum(dim=1, keepdim=True) + 500).div(1000, rounding_mode="floor").to(torch.uint8)


@torch.no_grad()
def evaluate_model(model: TrainedModel, images: torch.Tensor, labels: torch.Tensor, dataset: str, split: str) -> Evaluation:
    """Score ``model`` on ``images`` in passes of :data:`CHUNK`, on the model's device."""
    device = model.scale.device
    predicted = torch.cat([model(chunk.to(device)).argmax(dim=1).cpu() for chunk in images.split(CHUNK)])
    count = len(model.classes)
    confusion = torch.bincount(labels * count + predicted, minlength=count * count).view(count, count)
    accuracy = float((predicted == labels).float().mean()) if len(labels) else 0.0
    return Evaluation(dataset, split, len(labels), accuracy, list(model.classes), confusion.tolist())


def image_paths(arguments: list[Path]) -> list[Path]:
    """The image files named, and those under the folders named, found as training finds an
    image folder's (:func:`~batchlr.objectives.image_files.walk_image_files`: links followed,
    each file once), in the order of ``arguments``.

    Raises:
        BatchlrError: for a path that does not exist or is not a regular file or folder (a
            FIFO, which would block its reader), or no images at all.
    """
    is_folder = [argument.is_dir() for argument in arguments]
    folders = [str(argument) for argument, folder in zip(arguments, is_folder) if folder]
    try:
        under = walk_image_files(folders)
    except OSError as error:
        raise BatchlrError(f"cannot read {error.filename}: {error.strerror}") from None
    in_folder: list[list[Path]] = [[] for _ in folders]
    for file in under:
        in_folder[file.label].append(Path(file.path))
    next_folder = iter(in_folder)
    paths: list[Path] = []
    for argument, folder in zip(arguments, is_folder):
        paths.extend(next(next_folder) if folder else [check_regular_file(argument, "image file")])
    if not paths:
        raise BatchlrError(f"no images ({', '.join(IMG_EXTENSIONS)}) in {', '.join(map(str, arguments))}")
    return paths


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The most probable classes of one image, most probable first, with their probabilities."""

    path: str
    top: list[tuple[str, float]]


@torch.no_grad()
def predict(model: TrainedModel, paths: list[Path], top_k: int = 3) -> list[Prediction]:
    """The ``top_k`` classes of each image at ``paths``, read and classified :data:`CHUNK` at a time."""
    device = model.scale.device
    predictions = []
    for start in range(0, len(paths), CHUNK):
        chunk = paths[start : start + CHUNK]
        probabilities = model(model.load_images(chunk).to(device)).softmax(dim=1)
        values, indices = probabilities.topk(min(top_k, len(model.classes)), dim=1)
        for path, row_values, row_indices in zip(chunk, values.tolist(), indices.tolist()):
            predictions.append(Prediction(str(path), [(model.classes[index], value) for index, value in zip(row_indices, row_values)]))
    return predictions
