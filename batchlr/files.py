"""Reading only regular files, and writing files so that a kill or a full disk leaves the previous file intact."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from batchlr.errors import BatchlrError


def check_regular_file(path: Path, what: str) -> Path:
    """``path`` once it is known to be a regular file (links followed), before anything opens it.

    Opening a FIFO blocks until a writer comes, and a device or socket is never what a
    user meant; each is refused here, before any reader can hang on it.

    Raises:
        BatchlrError: naming ``what`` the file is (e.g. "model file") when it is missing,
            unreadable or not a regular file.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as error:
        raise BatchlrError(f"{what} {path} does not exist") from error
    except OSError as error:
        raise BatchlrError(f"cannot read {what} {path}: {error.strerror or error}") from error
    if stat.S_ISDIR(mode):
        raise BatchlrError(f"{what} {path} is a directory; give a file")
    if not stat.S_ISREG(mode):
        raise BatchlrError(f"{what} {path} is {file_kind(mode)}, not a regular file; give a file")
    return path


def file_kind(mode: int) -> str:
    """What a file of ``os.stat``'s ``st_mode`` ``mode`` that is not a regular file is, as
    "a FIFO", "a socket", "a device", "a directory", or else "not a regular file"."""
    kinds = (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISDIR, "a directory"),
    )
    return next((kind for test, kind in kinds if test(mode)), "not a regular file")


def check_writable(path: Path) -> None:
    """Raise :class:`BatchlrError` unless a file can be written at ``path`` (before work that would be lost)."""
    if path.is_dir():
        raise BatchlrError(f"cannot write {path}: it is a directory; give a file name")
    if not path.parent.is_dir():
        raise BatchlrError(
            f"cannot write {path}: there is no directory {path.parent}; create it first"
        )
    try:
        probe, probe_name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
        )
    except OSError as error:
        raise BatchlrError(
            f"cannot write {path}: {error.strerror}; choose a writable directory"
        ) from error
    os.close(probe)
    os.unlink(probe_name)


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(temporary)`` on a new file beside ``path``, flush it to disk, then rename it to ``path``.

    Readers see the old file or the whole new one, never a part; a failure leaves no
    temporary file behind.

    Raises:
        BatchlrError: when the directory cannot be written or the disk is full.
    """
    check_writable(path)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, 0o644 & ~_umask())
        os.replace(temporary, path)
    except OSError as error:
        raise BatchlrError(
            f"cannot write {path}: {error.strerror or error}; the previous file, if any, is unchanged"
        ) from error
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """:func:`write_atomically` for bytes."""
    write_atomically(path, lambda temporary: temporary.write_bytes(data))


def write_text_atomically(path: Path, text: str) -> None:
    """:func:`write_atomically` for UTF-8 text."""
    write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
