"""Files attached to a study with Optuna's artifact store, which optuna-dashboard shows beside
its trials: the refit model, the report's figures, the LR range test's and the noise scale's
curves.

The store is a directory: ``--artifacts DIR`` (or ``BATCHLR_ARTIFACTS``), else for a SQLite
study ``NAME-artifacts`` beside its file ``NAME.db``. A PostgreSQL study has no default (its
workers may not share a disk): give a directory they all reach, or nothing is attached.
"""

from __future__ import annotations

import dataclasses
import json
import mimetypes
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import BinaryIO

import optuna
from optuna.artifacts import ArtifactMeta, FileSystemArtifactStore

# the key get_all_artifact_meta and the dashboard read
from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX

from batchlr.errors import BatchlrError
from batchlr.files import write_atomically
from batchlr.studies.results.plotting import Figure, save_png
from batchlr.studies.store.storage import open_storage, sqlite_path, storage_fault
from batchlr.studies.store.summary import load_existing_study

ARTIFACTS_ENV = "BATCHLR_ARTIFACTS"
UNLINKED_REMEDY = (
    "the files are kept; run the command again with a storage that can be written to attach them"
)


@dataclasses.dataclass(frozen=True)
class Attachment:
    """What one attach did: the store's directory (``None``: the storage has none), the files
    attached, those not, and why not."""

    study: str
    store: Path | None
    attached: tuple[Path, ...] = ()
    missed: tuple[Path, ...] = ()
    reason: str | None = None


class AtomicArtifactStore(FileSystemArtifactStore):
    """Optuna's directory store, each file written under a temporary name and renamed once
    whole: Optuna's own writes in place, so a full disk left a partial file behind."""

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        # Optuna's own check that the id names a file inside the store
        path = self._get_filepath(artifact_id)

        def copy(temporary: Path) -> None:
            with temporary.open("wb") as written:
                shutil.copyfileobj(content_body, written)

        write_atomically(path, copy)


def _mimetype(path: Path) -> str:
    # A guess for .pt is a game console's format; the dashboard previews images and pages only.
    guessed = mimetypes.guess_type(path.name)[0] or ""
    return (
        guessed
        if guessed.startswith("image/") or guessed == "text/html"
        else "application/octet-stream"
    )


def artifact_dir(storage_url: str, given: Path | None) -> Path | None:
    """The store's directory: ``given``, else ``NAME-artifacts`` beside a SQLite file ``NAME.db``,
    else ``None`` (PostgreSQL, or SQLite in memory)."""
    if given is not None:
        return given
    database = sqlite_path(storage_url)
    return None if database is None else database.with_name(f"{database.stem}-artifacts")


def artifact_store(
    storage_url: str, given: Path | None, create: bool = False
) -> AtomicArtifactStore | None:
    """The store of a storage's studies (see :func:`artifact_dir`), its directory made when
    ``create``; ``None`` when there is none, or it does not exist and is not to be made.

    Raises:
        BatchlrError: when the directory cannot be made.
    """
    folder = artifact_dir(storage_url, given)
    if folder is None:
        return None
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise BatchlrError(
                f"cannot create the artifact directory {folder}: {error.strerror}; give --artifacts DIR"
            ) from error
    return AtomicArtifactStore(folder) if folder.is_dir() else None


def attach(storage_url: str, study_name: str, paths: list[Path], given: Path | None) -> Attachment:
    """Upload ``paths`` to study ``study_name``'s artifacts, in order, up to the first that
    fails; returns what was attached and what not, and why. Optuna cannot take an artifact
    off a study, so each report and refit adds its files beside the earlier ones.

    Never raises for a store or storage that cannot be written: the caller's files are
    already made, so the returned :class:`Attachment` says what happened instead.
    """
    folder = artifact_dir(storage_url, given)
    if folder is None:
        reason = (
            "the storage has no artifact store: give --artifacts DIR (a store every worker "
            "reaches) to attach files to a study on a server storage"
        )
        return Attachment(study_name, None, missed=tuple(paths), reason=reason)
    attached: list[Path] = []
    try:
        # The storage first, so that one refusing to be written (a read-only SQLite file) leaves no store directory.
        storage = open_storage(storage_url, access="write")
        study = load_existing_study(storage, study_name)
        store = artifact_store(storage_url, given, create=True)
        assert store is not None  # the directory was just made
        for path in paths:
            _upload(store, storage, study, path)
            attached.append(path)
    except Exception as error:
        fault = (
            error
            if isinstance(error, BatchlrError)
            else storage_fault(error, storage_url, UNLINKED_REMEDY)
        )
        if fault is None:
            raise
        return Attachment(
            study_name, folder, tuple(attached), tuple(paths[len(attached) :]), str(fault)
        )
    return Attachment(study_name, folder, tuple(attached))


def _upload(
    store: AtomicArtifactStore,
    storage: optuna.storages.BaseStorage,
    study: optuna.Study,
    path: Path,
) -> None:
    """Write ``path`` to ``store`` and link it to ``study``, as ``optuna.artifacts.upload_artifact``
    does; a link the storage refuses (a read-only database) takes the file out of the store
    again, where nothing would ever find it.

    Raises:
        BatchlrError: when the store cannot be written (see :meth:`AtomicArtifactStore.write`).
    """
    meta = ArtifactMeta(
        artifact_id=str(uuid.uuid4()), filename=path.name, mimetype=_mimetype(path), encoding=None
    )
    with path.open("rb") as content:
        store.write(meta.artifact_id, content)
    try:
        storage.set_study_system_attr(
            study._study_id,
            ARTIFACTS_ATTR_PREFIX + meta.artifact_id,
            json.dumps(dataclasses.asdict(meta)),
        )
    except BaseException:
        store.remove(meta.artifact_id)
        raise


def attach_figure(
    storage_url: str, study_name: str, figure: Figure, filename: str, given: Path | None
) -> Attachment:
    """Draw ``figure`` as the PNG ``filename`` and attach it to the study (see :func:`attach`)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / filename
        save_png(figure, path)
        return attach(storage_url, study_name, [path], given)
