"""A cache of decoded image folders: a folder is decoded once, and later runs load it in about a second.

An entry is one uncompressed ``.npz`` file of plain arrays: ``images`` (uint8 N×C×H×W),
``labels``, ``classes`` and ``sources`` as unicode arrays, and ``key``, the digest its name is
made from. It holds no pickle, so loading one runs no code. The key is a digest of the
folder's resolved path, the image size, and every image file's relative path, size,
modification time, status change time and inode number: a file added, removed, renamed,
rewritten or touched gives the folder another key (even written at the same size with its
modification time put back: that changes its status change time), so an entry is never
stale, only unused. Writing a new entry removes the entries of the same folder and image
size under other names (the stale ones); those of other image sizes stay, so switching
between sizes decodes each size once. Entries of folders that no longer exist stay until the
cache directory is deleted.

Caching never fails a run: an entry that is not a regular file, cannot be read, or whose key,
labels, file names or image size are not the folder's (one copied or renamed from another
folder's entry) is ignored and written afresh, and a cache directory that cannot be written
costs one warning line on stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from batchlr.errors import BatchlrError
from batchlr.files import check_regular_file, write_atomically
from batchlr.objectives.files.image_files import ImageFolder
from batchlr.objectives.settings import MAX_IMAGE_SIDE

CACHE_ENV = "BATCHLR_CACHE_DIR"
# Hashed into every entry's name: raise it when a change to decoding changes what an entry holds.
FORMAT_VERSION = 2


def default_cache_dir() -> Path:
    """``$BATCHLR_CACHE_DIR``, else ``batchlr`` in ``$XDG_CACHE_HOME``, else in ``~/.cache``."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG specification has a relative path ignored.
    return (Path(cache_home) if os.path.isabs(cache_home) else Path.home() / ".cache") / "batchlr"


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """Where the decoded images of one image folder, as its files are now, at one image size are cached."""

    path: Path
    folder: ImageFolder
    image_size: tuple[int, int] | None
    key: str

    @classmethod
    def of(
        cls, folder: ImageFolder, image_size: tuple[int, int] | None, cache_dir: Path | None
    ) -> CacheEntry:
        """The entry of ``folder`` at ``image_size`` (None: the images' own size) in ``cache_dir``
        (None: :func:`default_cache_dir`), from the status of its files (see the module's doc)."""
        root = os.fsencode(folder.root.resolve())  # a path's bytes, which need not be UTF-8
        size = "x".join(map(str, image_size)) if image_size else "own-size"
        files = hashlib.sha256(b"\0".join([str(FORMAT_VERSION).encode(), root, size.encode(), b""]))
        files.update(b"\0".join(map(os.fsencode, folder.sources)))
        files.update(folder.file_bytes.tobytes())
        files.update(folder.versions.tobytes())
        key = files.hexdigest()
        name = f"imagefolder-{hashlib.sha256(root).hexdigest()[:16]}-{size}-{key[:32]}.npz"
        return cls(
            (default_cache_dir() if cache_dir is None else cache_dir) / name,
            folder,
            image_size,
            key,
        )

    def load(self, check_fits: Callable[[tuple[int, int, int]], None]) -> np.ndarray | None:
        """The cached images, or None when there is no readable entry of this key whose labels,
        file names and image size are the folder's; ``check_fits`` gets the images' (channels,
        height, width) before they are read, and may raise to stop."""
        try:
            check_regular_file(self.path, "cache entry")  # a FIFO would block np.load for ever
        except BatchlrError:
            return None
        try:
            with np.load(self.path, allow_pickle=False) as stored:
                if (
                    str(stored["key"]) != self.key
                    or tuple(stored["classes"].tolist()) != self.folder.classes
                    or not np.array_equal(stored["labels"], self.folder.labels)
                    or tuple(stored["sources"].tolist()) != self.folder.sources
                ):
                    return None
                with stored.zip.open("images.npy") as member:
                    np.lib.format.read_magic(member)
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                if (
                    dtype != np.uint8
                    or len(shape) != 4
                    or shape[0] != len(self.folder.paths)
                    or shape[1] not in (1, 3)
                ):
                    return None
                if self.image_size is not None and tuple(shape[2:]) != self.image_size:
                    return None
                # written before sides were bounded: reading the headers refuses it
                if max(shape[2:]) > MAX_IMAGE_SIDE:
                    return None
                check_fits(shape[1:])
                images: np.ndarray = stored["images"]
                return images
        # What a missing, truncated or altered file raises (a zip's checksum fails with BadZipFile).
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None

    def store(self, images: np.ndarray) -> None:
        """Write the entry, then remove the stale entries of its folder and image size; on failure,
        warn on stderr and go on."""
        arrays = {
            "images": images,
            "labels": self.folder.labels,
            "classes": np.array(self.folder.classes),
            "sources": np.array(self.folder.sources),
            "key": np.array(self.key),
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            _warn(f"cannot create {self.path.parent}: {error.strerror}")
            return
        try:
            write_atomically(self.path, lambda temporary: _write_npz(temporary, arrays))
        except BatchlrError as error:
            _warn(str(error))
            return
        stale_prefix = self.path.name[: self.path.name.rindex("-") + 1]
        with os.scandir(self.path.parent) as entries:
            stale = [
                entry.path
                for entry in entries
                if entry.name.startswith(stale_prefix) and entry.name != self.path.name
            ]
        for path in stale:
            with contextlib.suppress(OSError):  # another process removed it first
                os.unlink(path)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as np.savez does, uncompressed, but straight from their memory: np.savez
    copies each array through a buffer of up to 16 MB, a peak that caching must not add."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_2_0(
                    member, np.lib.format.header_data_from_array_1_0(array)
                )
                member.write(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)


def _warn(reason: str) -> None:
    print(
        f"warning: not caching the decoded images: {reason}; the next run decodes them again",
        file=sys.stderr,
    )
