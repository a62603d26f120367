"""Finding image files: the one walk of folders that training (an image folder's class folders)
and ``predict`` (the folders it is given) share, so both read the same files.

Nothing here opens a file (the readers open each without blocking and refuse one that is not
a regular file before reading it). Names need not be UTF-8: they are the ``str`` that
``os.fsdecode`` gives, and :func:`os.fsencode` gives their bytes back.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from batchlr.errors import BatchlrError
from batchlr.objectives.settings import MAX_CLASSES

# torchvision's ImageFolder extensions; importing torchvision for them would take a second.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclasses.dataclass(frozen=True)
class ImageFile:
    """One image file found by :func:`walk_image_files`: its path, the index of the folder it was
    found under, and its ``os.stat`` when it was found."""

    path: str
    label: int
    status: os.stat_result


@dataclasses.dataclass(frozen=True)
class ImageFolder:
    """The image files of a class-per-folder tree (torchvision's ImageFolder layout), none opened yet.

    ``paths`` are in torchvision's order (by class, then folder path, then name), each file
    once; ``labels`` (int64) holds each file's index in ``classes``, ``sources`` its path
    relative to ``root``. ``file_bytes`` (int64) is each file's size, and ``versions`` (int64,
    one row per file) its modification time, status change time and inode number when the
    folder was listed: a file written again, even at the same size and with its modification
    time put back, gets another status change time, and a file renamed over it another inode.
    """

    root: Path
    classes: tuple[str, ...]
    paths: tuple[str, ...]
    labels: np.ndarray
    sources: tuple[str, ...]
    file_bytes: np.ndarray
    versions: np.ndarray


def list_image_folder(root: Path) -> ImageFolder:
    """List the images under ``root``'s class folders, with the status of each, without opening any.

    Links are followed, yet every file is listed once and every folder entered once (see
    :func:`walk_image_files`). Files without an image extension are skipped, as torchvision does.

    Raises:
        BatchlrError: when ``root`` is not a folder of 2 to :data:`~batchlr.objectives.settings.MAX_CLASSES`
            class folders each holding an image, two class names differ only in their Unicode
            form, or an image's path leads nowhere.
    """
    if not root.is_dir():
        raise BatchlrError(
            f"imagefolder: {root} is not a directory; give imagefolder:PATH with one folder per class"
        )
    try:
        with os.scandir(root) as entries:
            # as torchvision's find_classes
            classes = sorted(entry.name for entry in entries if entry.is_dir())
        # before walking them: a model of so many classes could not be loaded
        if len(classes) > MAX_CLASSES:
            raise BatchlrError(
                f"imagefolder: {root} has {len(classes):,} class folders, more than the "
                f"{MAX_CLASSES:,} classes batchlr trains on; give the folder whose subfolders are "
                "the classes, or merge classes"
            )
        _check_distinct(root, classes)
        files = walk_image_files(
            [os.path.join(root, name) for name in classes], also_entered=[str(root)]
        )
    except OSError as error:
        raise BatchlrError(f"imagefolder: {root}: {error}") from error
    if len(classes) < 2:
        found = f"one class folder ({classes[0]})" if classes else "no class folder"
        raise BatchlrError(
            f"imagefolder: {root} has {found}; give the folder whose subfolders are the classes"
        )
    empty = sorted(set(classes) - {classes[file.label] for file in files})
    if empty:
        raise BatchlrError(
            f"imagefolder: class folder {', '.join(empty)} in {root} holds no image of its own (links to images or "
            f"folders read elsewhere count once); add {'/'.join(IMG_EXTENSIONS)} files or remove the folder"
        )
    paths = tuple(file.path for file in files)
    labels = np.fromiter((file.label for file in files), dtype=np.int64, count=len(files))
    file_bytes = np.fromiter(
        (file.status.st_size for file in files), dtype=np.int64, count=len(files)
    )
    versions = np.stack(
        [
            np.fromiter(
                (file.status.st_mtime_ns for file in files), dtype=np.int64, count=len(files)
            ),
            np.fromiter(
                (file.status.st_ctime_ns for file in files), dtype=np.int64, count=len(files)
            ),
            # An inode number may use all 64 bits: its bits are kept as they are.
            np.fromiter(
                (file.status.st_ino for file in files), dtype=np.uint64, count=len(files)
            ).view(np.int64),
        ],
        axis=1,
    )
    # Every path starts with the root's, so slicing it off gives os.path.relpath's answer, ten times faster.
    prefix = len(os.path.join(str(root), ""))
    sources = tuple(path[prefix:] for path in paths)
    return ImageFolder(root, tuple(classes), paths, labels, sources, file_bytes, versions)


def walk_image_files(folders: Sequence[str], also_entered: Iterable[str] = ()) -> list[ImageFile]:
    """Every image file under ``folders`` once, labelled with the index of the folder it is
    under, in torchvision's order (by that index, then folder path, then name).

    Links to files and folders are followed, but a folder is entered once, and only after
    ``folders``, ``also_entered`` and every folder reached without a link are known, so a
    link to an ancestor or into another of ``folders`` adds nothing and a loop ends. A file
    reached by several paths (links, hard links) counts once: at its first path reached
    without a link, so that a link in one class to another class's image leaves that image
    in its own class, else at its first path.

    Raises:
        BatchlrError: when an image's path leads nowhere (a link to nothing, or to itself).
    """
    entered = {_identity(os.stat(folder)) for folder in (*also_entered, *folders)}
    direct = collections.deque((label, folder, False) for label, folder in enumerate(folders))
    linked: collections.deque[tuple[int, str]] = collections.deque()
    found: list[tuple[int, str, str, bool]] = []  # label, folder, file name, reached through a link
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
            elif entry.name.lower().endswith(IMG_EXTENSIONS):
                found.append((label, folder, entry.name, through_link or entry.is_symlink()))
    found.sort(key=lambda item: item[:3])
    first: dict[tuple[int, int], tuple[bool, int, os.stat_result]] = {}
    for position, (_, folder, name, through_link) in enumerate(found):
        path = os.path.join(folder, name)
        try:
            status = os.stat(path)
        except OSError as error:  # a link to nothing, or to itself
            raise BatchlrError(
                f"cannot read {path} ({error.strerror}); remove or fix it"
            ) from error
        identity = _identity(status)
        if identity not in first or (through_link, position) < first[identity][:2]:
            first[identity] = (through_link, position, status)
    kept = sorted((position, status) for _, position, status in first.values())
    return [
        ImageFile(os.path.join(found[p][1], found[p][2]), found[p][0], status) for p, status in kept
    ]


def class_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a class, or None: a blank name names nothing, and a control
    character or line break would split or garble the one line per image that predict prints.
    (A name of undecodable bytes, their surrogate escapes, is a folder's name all the same.)"""
    if not name.strip():
        return "is blank"
    if any(unicodedata.category(character) in ("Cc", "Zl", "Zp") for character in name):
        return "holds a control character or line break"
    return None


def _check_distinct(root: Path, classes: Sequence[str]) -> None:
    """Refuse class names that :func:`class_name_problem` refuses, and names that differ only
    in their Unicode form (é as one code point or as e and an accent): they look the same
    wherever a class is named, in a model file or a report."""
    seen: dict[str, str] = {}
    for name in classes:
        if problem := class_name_problem(name):
            raise BatchlrError(f"imagefolder: class folder {name!a} in {root} {problem}; rename it")
        normal = unicodedata.normalize("NFC", name)
        if normal in seen:
            raise BatchlrError(
                f"imagefolder: class folders {seen[normal]!a} and {name!a} in {root} have the same name in "
                "different Unicode forms; rename one"
            )
        seen[normal] = name


def _identity(status: os.stat_result) -> tuple[int, int]:
    """What makes a file or folder the same one, whatever path reaches it."""
    return status.st_dev, status.st_ino
