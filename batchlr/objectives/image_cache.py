"""A cache of decoded image folders: a folder is decoded once, and later runs load it in about a second.

An entry is one uncompressed ``.npz`` file of plain arrays: ``images`` (uint8 N×C×H×W),
``labels``, and ``classes`` and ``sources`` as unicode arrays. It holds no pickle, so loading
one runs no code. Its name holds a digest of the folder's resolved path and the image size,
and a digest of those with every image file's relative path, size and modification time: a
file added, removed, renamed, rewritten or touched gives the folder another name, so an entry
is never stale, only unused. Writing a new entry removes the entries of the same folder and
image size under other names (the stale ones); those of other image sizes stay, so switching
between sizes decodes each size once. Entries of folders that no longer exist stay until the
cache directory is deleted.

Caching never fails a run: an entry that cannot be read, or whose labels and file names are
not the folder's, is ignored and written afresh, and a cache directory that cannot be
written costs one warning line on stderr.
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
from batchlr.files import write_atomically
from batchlr.objectives.image_files import ImageFolder

CACHE_ENV = "BATCHLR_CACHE_DIR"
# Hashed into every entry's name: raise it when a change to decoding changes what an entry holds.
FORMAT_VERSION = 1


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

    @classmethod
    def of(cls, folder: ImageFolder, image_size: tuple[int, int] | None, cache_dir: Path | None) -> CacheEntry:
        """The entry of ``folder`` at ``image_size`` (None: the images' own size) in ``cache_dir``
        (None: :func:`default_cache_dir`), from the sizes and modification times of its files."""
        root = str(folder.root.resolve())
        size = "x".join(map(str, image_size)) if image_size else "own-size"
        files = hashlib.sha256(f"{FORMAT_VERSION}\0{root}\0{size}\0".encode())
        for source, file_bytes, modified_ns in zip(folder.sources, folder.file_bytes.tolist(), folder.versions[:, 0].tolist()):
            files.update(f"{source}\0{file_bytes}\0{modified_ns}\0".encode())
        name = f"imagefolder-{hashlib.sha256(root.encode()).hexdigest()[:16]}-{size}-{files.hexdigest()[:32]}.npz"
        return cls((default_cache_dir() if cache_dir is None else cache_dir) / name, folder)

    def load(self, check_fits: Callable[[tuple[int, int, int]], None]) -> np.ndarray | None:
        """The cached images, or None when there is no readable entry whose labels and file names
        are the folder's; ``check_fits`` gets the images' (channels, height, width) before they
        are read, and may raise to stop."""
        try:
            with np.load(self.path, allow_pickle=False) as stored:
                if (
                    tuple(stored["classes"].tolist()) != self.folder.classes
                    or not np.array_equal(stored["labels"], self.folder.labels)
                    or tuple(stored["sources"].tolist()) != self.folder.sources
                ):
                    return None
                with stored.zip.open("images.npy") as member:
                    np.lib.format.read_magic(member)
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                if dtype != np.uint8 or len(shape) != 4 or shape[0] != len(self.folder.paths):
                    return None
                check_fits(shape[1:])
                return stored["images"]
        # What a missing, truncated or altered file raises (a zip's checksum fails with BadZipFile).
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None

    def store(self, images: np.ndarray) -> None:
        """Write the entry, then remove the stale entries of its folder and image size; on failure,
        warn on stderr and go on."""
        arrays = {
            "images": images, "labels": self.folder.labels,
            "classes": np.array(self.folder.classes), "sources": np.array(self.folder.sources),
        }  # fmt: skip
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
            stale = [entry.path for entry in entries if entry.name.startswith(stale_prefix) and entry.name != self.path.name]
        for path in stale:
            with contextlib.suppress(OSError):  # another process removed it first
                os.unlink(path)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as np.savez does, uncompressed, but straight from their memory: np.savez
    copies each array through a buffer of up to 16 MB, a peak that caching must not add."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_2_0(member, np.lib.format.header_data_from_array_1_0(array))
                member.write(np.ascontiguousarray(array).reshape(-1).view(np.uint8))


def _warn(reason: str) -> None:
    print(f"warning: not caching the decoded images: {reason}; the next run decodes them again", file=sys.stderr)
