"""Readers for the on-disk formats of the built-in data sets.

Each reader returns ``(images, labels)`` as NumPy arrays: images uint8 in N×C×H×W,
labels int64. Nothing here normalises or moves data; :mod:`batchlr.objectives.data` does.
"""

from __future__ import annotations

import collections
import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from batchlr.errors import BatchlrError

Arrays = tuple[np.ndarray, np.ndarray]

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
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
        batch = {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}
        images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError, AttributeError) as error:
        raise BatchlrError(f"{path} is not a CIFAR-10 python batch file ({error})") from None
    if len(images) != len(labels):
        raise BatchlrError(f"{path} holds {len(images)} images but {len(labels)} labels")
    return images, labels


def read_cifar10(folder: Path, download: Callable[[], None]) -> tuple[Arrays, Arrays]:
    """Read CIFAR-10's five training batches and its test batch from ``folder``, downloading them first if absent."""
    names = (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE)
    if not all((folder / name).is_file() for name in names):
        download()
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise BatchlrError(f"CIFAR-10 files missing in {folder}: {', '.join(missing)}")
    train = [read_cifar_batch(folder / name) for name in CIFAR_TRAIN_FILES]
    test = read_cifar_batch(folder / CIFAR_TEST_FILE)
    return (np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train])), test


def read_idx_split(raw: Path, prefix: str) -> Arrays:
    """Read ``{prefix}-images-idx3-ubyte`` and ``{prefix}-labels-idx1-ubyte`` (MNIST's format)."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    image_file, label_file = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"
    try:
        images = read_image_file(str(image_file)).numpy()[:, None]
        labels = read_label_file(str(label_file)).numpy().astype(np.int64)
    except (OSError, AssertionError, RuntimeError, ValueError) as error:
        raise BatchlrError(f"cannot read IDX files {image_file.name}/{label_file.name} in {raw}: {error}") from None
    if len(images) != len(labels):
        raise BatchlrError(f"{image_file} holds {len(images)} images but {label_file} {len(labels)} labels")
    return images, labels


def read_mnist_like(raw: Path, download: Callable[[], None]) -> tuple[Arrays, Arrays]:
    """Read an MNIST-format train and test split from ``raw``, downloading them first if absent."""
    files = [f"{split}-{kind}" for split in ("train", "t10k") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]
    if not all((raw / name).is_file() for name in files):
        download()
    missing = [name for name in files if not (raw / name).is_file()]
    if missing:
        raise BatchlrError(f"files missing in {raw}: {', '.join(missing)}")
    return read_idx_split(raw, "train"), read_idx_split(raw, "t10k")


def read_image_folder(root: Path) -> tuple[Arrays, tuple[str, ...], tuple[str, ...]]:
    """Read a class-per-folder tree of images (torchvision's ImageFolder layout) as RGB.

    Returns the images and labels, the class names, and each image's path relative to
    ``root``, in torchvision's order. Links are followed, yet every file is read once and
    every folder entered once (see :func:`_image_files`). Every image must have the same
    size. Files without an image extension are skipped, as torchvision does; a file with one
    that does not decode is an error.
    """
    from PIL import Image
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes

    if not root.is_dir():
        raise BatchlrError(f"imagefolder: {root} is not a directory; give imagefolder:PATH with one folder per class")
    try:
        classes, _ = find_classes(str(root))
        samples = _image_files(str(root), classes, IMG_EXTENSIONS)
    except OSError as error:
        raise BatchlrError(f"imagefolder: {root}: {error}") from None
    if len(classes) < 2:
        raise BatchlrError(
            f"imagefolder: {root} has one class folder ({classes[0]}); give the folder whose subfolders are the classes"
        )
    empty = sorted(set(classes) - {classes[label] for _, label in samples})
    if empty:
        raise BatchlrError(
            f"imagefolder: class folder {', '.join(empty)} in {root} holds no image of its own (links to images or "
            f"folders read elsewhere count once); add {'/'.join(IMG_EXTENSIONS)} files or remove the folder"
        )
    images = []
    for path, _ in samples:
        try:
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("RGB")))
        except OSError as error:  # PIL's UnidentifiedImageError and truncated files are OSErrors
            raise BatchlrError(f"imagefolder: cannot decode {path} ({error}); remove or replace it") from None
        if images[-1].shape != images[0].shape:
            size, first = images[-1].shape[:2], images[0].shape[:2]
            raise BatchlrError(
                f"imagefolder: {path} is {size[0]}x{size[1]} but {samples[0][0]} is {first[0]}x{first[1]}; "
                "resize the images to one size"
            )
    labels = np.asarray([label for _, label in samples], dtype=np.int64)
    sources = tuple(os.path.relpath(path, root) for path, _ in samples)
    return (np.stack(images).transpose(0, 3, 1, 2), labels), tuple(classes), sources


def _image_files(root: str, classes: Sequence[str], extensions: tuple[str, ...]) -> list[tuple[str, int]]:
    """Every image file under the class folders once, as ``(path, class index)``, in
    torchvision's order (by class, then folder path, then name).

    Links to files and folders are followed, but a folder is entered once, and only after
    the root, the class folders and every folder reached without a link are known, so a link
    to an ancestor or into another class adds nothing and a loop ends. A file reached by
    several paths (links, hard links) counts once: at its first path reached without a link,
    so that a link in one class to another class's image leaves that image in its own class,
    else at its first path.
    """
    entered = {_identity(os.stat(root)), *(_identity(os.stat(os.path.join(root, name))) for name in classes)}
    direct = collections.deque((label, os.path.join(root, name), False) for label, name in enumerate(classes))
    linked: collections.deque[tuple[int, str]] = collections.deque()
    found: list[tuple[int, str, str, bool]] = []  # class, folder, file name, reached through a link
    while direct or linked:
        if direct:
            label, folder, through_link = direct.popleft()
        else:
            label, folder = linked.popleft()
            identity = _identity(os.stat(folder))
            if identity in entered:
                continue
            entered.add(identity)
            through_link = True
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                identity = _identity(entry.stat(follow_symlinks=False))
                if identity not in entered:  # only a bind mount could enter a real folder twice
                    entered.add(identity)
                    direct.append((label, entry.path, through_link))
            elif entry.is_dir():
                linked.append((label, entry.path))
            elif entry.name.lower().endswith(extensions):
                found.append((label, folder, entry.name, through_link or entry.is_symlink()))
    found.sort(key=lambda item: item[:3])
    first: dict[tuple[int, int], tuple[bool, int]] = {}
    for position, (_, folder, name, through_link) in enumerate(found):
        path = os.path.join(folder, name)
        try:
            identity = _identity(os.stat(path))
        except OSError as error:  # a link to nothing, or to itself
            raise BatchlrError(f"imagefolder: cannot read {path} ({error.strerror}); remove or fix it") from None
        if identity not in first or (through_link, position) < first[identity]:
            first[identity] = (through_link, position)
    return [(os.path.join(found[p][1], found[p][2]), found[p][0]) for p in sorted(p for _, p in first.values())]


def _identity(status: os.stat_result) -> tuple[int, int]:
    """What makes a file or folder the same one, whatever path reaches it."""
    return status.st_dev, status.st_ino
