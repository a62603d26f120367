"""Data sets by name, loaded once per process into uint8 tensors on the CPU.

Pixels stay as stored, 0..255, a quarter of float32's memory on the host and on the device;
training standardises each batch on the device with statistics of its training folds. An
image folder is decoded once: later loads read it from :mod:`batchlr.objectives.files.image_cache`.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import importlib.util
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.objectives.data import memory
from batchlr.objectives.files import dataset_files, readers
from batchlr.objectives.files.image_cache import CacheEntry
from batchlr.objectives.files.image_files import list_image_folder

DATASET_NAMES: tuple[str, ...] = (
    "digits",
    "mnist",
    "fashion-mnist",
    "cifar10",
    "cifar2",
    "imagefolder:PATH",
)
IMAGEFOLDER_PREFIX = "imagefolder:"

MNIST_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR2_CLASSES = ("airplane", "bird")
_CLASSES = {
    "mnist": MNIST_CLASSES,
    "fashion-mnist": FASHION_MNIST_CLASSES,
    "cifar10": dataset_files.CIFAR10_CLASSES,
    "cifar2": CIFAR2_CLASSES,
}
_CIFAR2_KEEP = [dataset_files.CIFAR10_CLASSES.index(name) for name in CIFAR2_CLASSES]
"""The CIFAR-10 labels that cifar2 keeps."""


@dataclasses.dataclass(frozen=True)
class ImageData:
    """A data set as tensors on the CPU: images uint8 N×C×H×W as stored (0..255, not
    normalised), labels int64.

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

    def content_fingerprint(self) -> str:
        """A digest of the training split's content: its class names, and each image's name,
        label, shape and pixels. Equal for a copy of an image folder read from anywhere; another
        once any of these differs, so that files named alike (0.png, ...) with other pixels are
        other data. About 0.1 s per 150 MB of pixels."""
        digest = hashlib.sha256(
            repr((len(self.classes), len(self.sources), tuple(self.images.shape))).encode()
        )
        # fsencode: names need not be UTF-8 (see batchlr.objectives.files.image_files).
        digest.update(b"\0".join(map(os.fsencode, (*self.classes, *self.sources))))
        digest.update(self.labels.numpy().tobytes())
        # hashed in place: no copy of the data set
        digest.update(np.ascontiguousarray(self.images.numpy()).data)
        return digest.hexdigest()[:32]


def check_dataset_name(spec: str) -> str:
    """``spec`` when it names a data set batchlr knows, an image folder's path made absolute (a
    study stores it, and is resumed from anywhere); else a one-line error."""
    known = spec in DATASET_NAMES[:-1] or (
        spec.startswith(IMAGEFOLDER_PREFIX) and len(spec) > len(IMAGEFOLDER_PREFIX)
    )
    if not known:
        raise BatchlrUsageError(
            f"--dataset: unknown data set {spec!r}; choose from {', '.join(DATASET_NAMES)}"
        )
    if spec.startswith(IMAGEFOLDER_PREFIX):
        return IMAGEFOLDER_PREFIX + str(
            Path(spec[len(IMAGEFOLDER_PREFIX) :]).expanduser().resolve()
        )
    return spec


def dataset_slug(spec: str) -> str:
    """A short name for study names: ``imagefolder:/x/pets`` becomes ``pets``."""
    if spec.startswith(IMAGEFOLDER_PREFIX):
        return Path(spec[len(IMAGEFOLDER_PREFIX) :]).expanduser().resolve().name or "imagefolder"
    return spec


@functools.lru_cache(maxsize=4)
def load_dataset(
    spec: str,
    data_dir: Path,
    image_size: tuple[int, int] | None = None,
    cache_dir: Path | None = None,
    device: torch.device | None = None,
) -> ImageData:
    """Load the data set ``spec`` (see :data:`DATASET_NAMES`), reading or downloading into ``data_dir``.

    Args:
        image_size: (height, width) that every image is scaled and centre-cropped to (see
            :func:`readers.fit_image`); None keeps the images' size, and an image folder must
            then hold one size.
        cache_dir: where decoded image folders are cached; None: ``$BATCHLR_CACHE_DIR``, else
            under the user's cache home (see :mod:`batchlr.objectives.files.image_cache`).
        device: where training will copy the images: when CUDA, its free memory is checked too.

    Raises:
        BatchlrError: when the data cannot be read, or its images would not fit in memory (checked
            before an image folder is decoded, or a built-in set resized).
    """
    check_dataset_name(spec)
    if spec.startswith(IMAGEFOLDER_PREFIX):
        return _load_image_folder(
            spec, Path(spec[len(IMAGEFOLDER_PREFIX) :]).expanduser(), image_size, cache_dir, device
        )
    if spec == "digits":
        return _image_data(spec, _resized(spec, _digits(), None, image_size, device), MNIST_CLASSES)
    if spec in ("mnist", "fashion-mnist"):
        raw = _mnist_raw(spec, data_dir)
        train, test = dataset_files.read_mnist_like(raw, _downloader(spec, data_dir, raw))
        return _image_data(spec, _resized(spec, train, test, image_size, device), _CLASSES[spec])
    folder = data_dir / dataset_files.CIFAR_FOLDER
    train, test = dataset_files.read_cifar10(folder, _downloader("cifar10", data_dir, folder))
    if spec == "cifar10":
        return _image_data(
            spec, _resized(spec, train, test, image_size, device), dataset_files.CIFAR10_CLASSES
        )
    return _image_data(
        spec,
        _resized(
            spec, _subset(train, _CIFAR2_KEEP), _subset(test, _CIFAR2_KEEP), image_size, device
        ),
        CIFAR2_CLASSES,
    )


def load_test_split(
    spec: str, data_dir: Path, image_size: tuple[int, int] | None = None
) -> ImageData | None:
    """The official test split alone of ``spec`` (mnist, fashion-mnist, cifar10, cifar2), as the
    images of an :class:`ImageData`, fitted to ``image_size``; None for a data set without
    one. Only the test files are read, or downloaded when missing: scoring a model needs
    no training files.

    Raises:
        BatchlrError: when the test files are missing and cannot be downloaded, or damaged.
    """
    read: Callable[[], dataset_files.Arrays]
    if spec in ("mnist", "fashion-mnist"):
        folder = _mnist_raw(spec, data_dir)
        files, read = (
            ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"],
            lambda: dataset_files.read_idx_split(folder, "t10k"),
        )
    elif spec in ("cifar10", "cifar2"):
        folder = data_dir / dataset_files.CIFAR_FOLDER
        files, read = (
            [dataset_files.CIFAR_TEST_FILE],
            lambda: dataset_files.read_cifar_batch(folder / dataset_files.CIFAR_TEST_FILE),
        )
    else:
        return None
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        _downloader(
            "cifar10" if spec == "cifar2" else spec, data_dir, folder, needs="its test files"
        )(missing)
    test = read()
    if spec == "cifar2":
        test = _subset(test, _CIFAR2_KEEP)
    return _image_data(spec, _resized(spec, test, None, image_size, None), _CLASSES[spec])


def _mnist_raw(spec: str, data_dir: Path) -> Path:
    """Where torchvision keeps ``spec``'s (mnist or fashion-mnist) IDX files under ``data_dir``."""
    return data_dir / ("MNIST" if spec == "mnist" else "FashionMNIST") / "raw"


def _load_image_folder(
    spec: str,
    root: Path,
    image_size: tuple[int, int] | None,
    cache_dir: Path | None,
    device: torch.device | None,
) -> ImageData:
    """The images of the folder at ``root`` from the cache, else decoded and cached; either way
    only once it is known that they fit in memory."""
    folder = list_image_folder(root)

    def check_fits(shape: tuple[int, int, int]) -> None:
        memory.check_fits("imagefolder", len(folder.paths), shape, device, folder=True)

    entry = CacheEntry.of(folder, image_size, cache_dir)
    images = entry.load(check_fits)
    if images is None:
        with readers.decoding_workers(folder) as workers:
            shape = readers.image_shape(folder, image_size, workers)
            check_fits(shape)
            images = readers.decode_images(folder, shape, workers)
        entry.store(images)
    return dataclasses.replace(
        _image_data(spec, ((images, folder.labels), None), folder.classes), sources=folder.sources
    )


def _downloader(
    spec: str, data_dir: Path, expected: Path, needs: str = "its training and test files"
) -> Callable[[list[str]], None]:
    """Fetch ``spec`` into ``data_dir`` with torchvision, or fail naming the files missing, where
    they belong and which the caller ``needs``; a failed download takes away the folders it made."""

    def download(missing: list[str]) -> None:
        import torchvision.datasets as tvd

        source = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[
            spec
        ]
        made = next(
            (
                folder
                for folder in (
                    *reversed(expected.relative_to(data_dir).parents),
                    expected.relative_to(data_dir),
                )
                if not (data_dir / folder).exists()
            ),
            None,
        )
        try:
            source(root=str(data_dir), train=True, download=True)
        except Exception as error:  # torchvision raises URLError, RuntimeError, OSError and more
            if made is not None:
                shutil.rmtree(data_dir / made, ignore_errors=True)
            raise BatchlrError(
                f"{spec}: {expected} lacks {', '.join(missing)} (it needs {needs}), and they could not be "
                f"downloaded ({type(error).__name__}: no network?); put them there or point --data-dir at a copy"
            ) from error

    return download


def _subset(arrays: dataset_files.Arrays, keep: list[int]) -> dataset_files.Arrays:
    """The samples whose label is in ``keep``, relabelled 0..len(keep)-1."""
    images, labels = arrays
    mask = np.isin(labels, keep)
    relabel = np.full(max(keep) + 1, -1, dtype=np.int64)
    relabel[keep] = np.arange(len(keep))
    return images[mask], relabel[labels[mask]]


def _resized(
    name: str,
    train: dataset_files.Arrays,
    test: dataset_files.Arrays | None,
    image_size: tuple[int, int] | None,
    device: torch.device | None,
) -> tuple[dataset_files.Arrays, dataset_files.Arrays | None]:
    """The splits with their images fitted to ``image_size`` when it is given and not theirs,
    after checking that they fit."""
    images = train[0]
    if image_size is None or images.shape[2:] == image_size:
        return train, test
    count = len(images) + (0 if test is None else len(test[0]))
    memory.check_fits(name, count, (images.shape[1], *image_size), device, folder=False)
    resized_test = None if test is None else (readers.resize_images(test[0], image_size), test[1])
    return (readers.resize_images(images, image_size), train[1]), resized_test


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as uint8 images (1, 8, 8) and int64 labels, read from the file
    it ships, as its ``load_digits`` reads it: importing scikit-learn would take a quarter of
    every command's start."""
    package = importlib.util.find_spec("sklearn")
    if package is None or not package.submodule_search_locations:
        raise BatchlrError("--dataset digits needs scikit-learn: pip install scikit-learn")
    table = Path(package.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(table, "rt", encoding="ascii") as rows:
        values = np.loadtxt(rows, delimiter=",")
    # Pixel values run 0..16; scale to 0..255 like every other source.
    images = (values[:, :-1].reshape(-1, 1, 8, 8) * (255 / 16)).round().astype(np.uint8)
    return images, values[:, -1].astype(np.int64)


def _image_data(
    name: str,
    splits: tuple[dataset_files.Arrays, dataset_files.Arrays | None],
    classes: tuple[str, ...],
) -> ImageData:
    """The training and test split as tensors that share the arrays' memory, once their labels are checked."""
    (images, labels), test = splits
    if len(images) == 0:
        raise BatchlrError(f"data set {name!r} holds no images")
    if labels.min() < 0 or labels.max() >= len(classes):
        raise BatchlrError(f"data set {name!r} has labels outside 0..{len(classes) - 1}")
    if test is None:
        return ImageData(name, torch.from_numpy(images), torch.from_numpy(labels), classes)
    return ImageData(
        name,
        torch.from_numpy(images),
        torch.from_numpy(labels),
        classes,
        torch.from_numpy(test[0]),
        torch.from_numpy(test[1]),
    )
