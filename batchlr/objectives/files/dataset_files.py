"""Readers of the built-in data sets' files: CIFAR-10's pickled batches and MNIST's IDX files.

CIFAR's pickles are read by an unpickler that can only rebuild NumPy arrays, never run code.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from batchlr.errors import BatchlrError

Arrays = tuple[np.ndarray, np.ndarray]

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN_FILES = tuple(f"data_batch_{number}" for number in range(1, 6))
CIFAR_TEST_FILE = "test_batch"

# CIFAR's python format is a pickle; loading one may only rebuild NumPy arrays, never run code.
_CIFAR_PICKLE_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        # numpy.core is numpy 1's name for numpy._core; files written by either must load.
        return super().find_class(module.replace("numpy.core", "numpy._core"), name)


def read_cifar_batch(path: Path) -> Arrays:
    """Read one CIFAR-10 python batch file (a dict with ``data`` N×3072 uint8 and ``labels``)."""
    try:
        with path.open("rb") as handle:
            batch = _ArrayOnlyUnpickler(handle, encoding="bytes").load()
        batch = {
            key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()
        }
        images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (
        OSError,
        pickle.UnpicklingError,
        EOFError,
        KeyError,
        ValueError,
        AttributeError,
    ) as error:
        raise BatchlrError(f"{path} is not a CIFAR-10 python batch file ({error})") from error
    if len(images) != len(labels):
        raise BatchlrError(f"{path} holds {len(images)} images but {len(labels)} labels")
    return images, labels


def read_cifar10(folder: Path, download: Callable[[list[str]], None]) -> tuple[Arrays, Arrays]:
    """Read CIFAR-10's five training batches and its test batch from ``folder``, downloading them
    first if any is absent (``download`` gets the names of those missing)."""
    names = (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE)
    if not all((folder / name).is_file() for name in names):
        download([name for name in names if not (folder / name).is_file()])
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise BatchlrError(f"CIFAR-10 files missing in {folder}: {', '.join(missing)}")
    train = [read_cifar_batch(folder / name) for name in CIFAR_TRAIN_FILES]
    test = read_cifar_batch(folder / CIFAR_TEST_FILE)
    return (np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train])), test


def read_idx_split(raw: Path, prefix: str) -> Arrays:
    """Read ``{prefix}-images-idx3-ubyte`` and ``{prefix}-labels-idx1-ubyte`` (MNIST's format)."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    image_file, label_file = (
        raw / f"{prefix}-images-idx3-ubyte",
        raw / f"{prefix}-labels-idx1-ubyte",
    )
    try:
        images = read_image_file(str(image_file)).numpy()[:, None]
        labels = read_label_file(str(label_file)).numpy().astype(np.int64)
    except (OSError, AssertionError, RuntimeError, ValueError) as error:
        raise BatchlrError(
            f"cannot read IDX files {image_file.name}/{label_file.name} in {raw}: {error}"
        ) from error
    if len(images) != len(labels):
        raise BatchlrError(
            f"{image_file} holds {len(images)} images but {label_file} {len(labels)} labels"
        )
    return images, labels


def read_mnist_like(raw: Path, download: Callable[[list[str]], None]) -> tuple[Arrays, Arrays]:
    """Read an MNIST-format train and test split from ``raw``, downloading them first if any file
    is absent (``download`` gets the names of those missing)."""
    files = [
        f"{split}-{kind}"
        for split in ("train", "t10k")
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
    ]
    if not all((raw / name).is_file() for name in files):
        download([name for name in files if not (raw / name).is_file()])
    missing = [name for name in files if not (raw / name).is_file()]
    if missing:
        raise BatchlrError(f"files missing in {raw}: {', '.join(missing)}")
    return read_idx_split(raw, "train"), read_idx_split(raw, "t10k")
