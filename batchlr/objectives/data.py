"""Data sets by name, loaded once per process into normalised in-memory tensors."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.objectives import readers

DATASET_NAMES: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar2", "imagefolder:PATH")
IMAGEFOLDER_PREFIX = "imagefolder:"

MNIST_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR2_CLASSES = ("airplane", "bird")


@dataclasses.dataclass(frozen=True)
class ImageData:
    """A data set as tensors on the CPU: images float32 N×C×H×W, normalised per channel.

    ``test_images`` is the official test split where the data set has one, else ``None``
    (the study then holds out part of the training split instead). ``sources`` names each
    training image's file, relative to the image folder; it is empty for the built-in sets.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    test_images: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    sources: tuple[str, ...] = ()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        channels, height, width = self.images.shape[1:]
        return int(channels), int(height), int(width)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def labels_fingerprint(self) -> str:
        """A digest of the training labels, to check stored folds still fit the data."""
        return hashlib.sha256(self.labels.numpy().tobytes()).hexdigest()[:16]


def check_dataset_name(spec: str) -> str:
    """``spec`` when it names a data set batchlr knows, an image folder's path made absolute (a
    study stores it, and is resumed from anywhere); else a one-line error."""
    known = spec in DATASET_NAMES[:-1] or (spec.startswith(IMAGEFOLDER_PREFIX) and len(spec) > len(IMAGEFOLDER_PREFIX))
    if not known:
        raise BatchlrUsageError(f"--dataset: unknown data set {spec!r}; choose from {', '.join(DATASET_NAMES)}")
    if spec.startswith(IMAGEFOLDER_PREFIX):
        return IMAGEFOLDER_PREFIX + str(Path(spec[len(IMAGEFOLDER_PREFIX) :]).expanduser().resolve())
    return spec


def dataset_slug(spec: str) -> str:
    """A short name for study names: ``imagefolder:/x/pets`` becomes ``pets``."""
    if spec.startswith(IMAGEFOLDER_PREFIX):
        return Path(spec[len(IMAGEFOLDER_PREFIX) :]).expanduser().resolve().name or "imagefolder"
    return spec


@functools.lru_cache(maxsize=4)
def load_dataset(spec: str, data_dir: Path) -> ImageData:
    """Load the data set ``spec`` (see :data:`DATASET_NAMES`), reading or downloading into ``data_dir``."""
    check_dataset_name(spec)
    if spec == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        # Pixel values run 0..16; scale to 0..255 like every other source.
        images = (digits.images[:, None] * (255 / 16)).round().astype(np.uint8)
        return _normalised(spec, (images, digits.target.astype(np.int64)), None, MNIST_CLASSES)
    if spec in ("mnist", "fashion-mnist"):
        folder = "MNIST" if spec == "mnist" else "FashionMNIST"
        raw = data_dir / folder / "raw"
        train, test = readers.read_mnist_like(raw, _downloader(spec, data_dir, raw))
        return _normalised(spec, train, test, MNIST_CLASSES if spec == "mnist" else FASHION_MNIST_CLASSES)
    if spec in ("cifar10", "cifar2"):
        folder = data_dir / readers.CIFAR_FOLDER
        train, test = readers.read_cifar10(folder, _downloader("cifar10", data_dir, folder))
        if spec == "cifar10":
            return _normalised(spec, train, test, readers.CIFAR10_CLASSES)
        keep = [readers.CIFAR10_CLASSES.index(name) for name in CIFAR2_CLASSES]
        return _normalised(spec, _subset(train, keep), _subset(test, keep), CIFAR2_CLASSES)
    train, classes, sources = readers.read_image_folder(Path(spec[len(IMAGEFOLDER_PREFIX) :]).expanduser())
    return dataclasses.replace(_normalised(spec, train, None, classes), sources=sources)


def _downloader(spec: str, data_dir: Path, expected: Path) -> Callable[[], None]:
    """Fetch ``spec`` into ``data_dir`` with torchvision, or fail saying where its files belong."""

    def download() -> None:
        import torchvision.datasets as tvd

        source = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[spec]
        try:
            source(root=str(data_dir), train=True, download=True)
        except Exception as error:  # torchvision raises URLError, RuntimeError, OSError and more
            raise BatchlrError(
                f"{spec} is not in {expected} and could not be downloaded ({type(error).__name__}: no network?); "
                "put its files there or point --data-dir at a copy"
            ) from None

    return download


def _subset(arrays: readers.Arrays, keep: list[int]) -> readers.Arrays:
    """The samples whose label is in ``keep``, relabelled 0..len(keep)-1."""
    images, labels = arrays
    mask = np.isin(labels, keep)
    relabel = np.full(max(keep) + 1, -1, dtype=np.int64)
    relabel[keep] = np.arange(len(keep))
    return images[mask], relabel[labels[mask]]


def _normalised(
    name: str, train: readers.Arrays, test: readers.Arrays | None, classes: tuple[str, ...]
) -> ImageData:
    """Scale to [0, 1], then standardise each channel with the training split's statistics."""
    images = torch.from_numpy(train[0]).float().div_(255)
    labels = torch.from_numpy(train[1])
    if len(images) == 0:
        raise BatchlrError(f"data set {name!r} holds no images")
    if labels.min() < 0 or labels.max() >= len(classes):
        raise BatchlrError(f"data set {name!r} has labels outside 0..{len(classes) - 1}")
    mean = images.mean(dim=(0, 2, 3), keepdim=True)
    std = images.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    images = (images - mean) / std
    if test is None:
        return ImageData(name, images, labels, classes)
    test_images = (torch.from_numpy(test[0]).float().div_(255) - mean) / std
    return ImageData(name, images, labels, classes, test_images, torch.from_numpy(test[1]))
