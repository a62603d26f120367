"""Opening Optuna storages from URLs, with passwords kept out of every message."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import sqlalchemy.exc
from sqlalchemy.engine import URL, make_url

from batchlr.errors import BatchlrError, BatchlrUsageError

DEFAULT_STORAGE = "sqlite:///batchlr.db"
STORAGE_ENV = "BATCHLR_STORAGE"
# Seconds a SQLite writer waits for another process's lock before failing.
SQLITE_BUSY_TIMEOUT = 60


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``; text that is no URL comes back unchanged."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def open_storage(url: str, *, create: bool) -> optuna.storages.RDBStorage:
    """Open the relational storage at ``url``.

    With ``create=False`` a SQLite file must already exist, so that read-only commands
    never leave an empty database behind a typo.

    Raises:
        BatchlrError: for a malformed URL, a missing driver, a path that cannot be written,
            a file that is no database, or a server that does not answer.
    """
    masked = mask_url(url)
    parsed = _parse(url)
    engine_kwargs = {}
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_path(parsed, masked, create=create)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT}}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except ModuleNotFoundError as error:
        raise BatchlrError(
            f"--storage {masked}: the database driver {error.name!r} is not installed; "
            f"pip install 'batchlr[postgres]' for PostgreSQL"
        ) from None
    except sqlalchemy.exc.NoSuchModuleError:
        raise BatchlrUsageError(f"--storage {masked}: unknown database kind; use sqlite:///FILE or postgresql://USER@HOST/DB") from None
    except (sqlalchemy.exc.SQLAlchemyError, RuntimeError) as error:
        detail = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise BatchlrError(f"cannot open storage {masked}: {detail}") from None


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise BatchlrUsageError(
            f"--storage {mask_url(url)!r} is not a database URL; use sqlite:///FILE or postgresql://USER@HOST/DB"
        ) from None


def _check_sqlite_path(parsed: URL, masked: str, *, create: bool) -> None:
    if not parsed.database or parsed.database == ":memory:":
        raise BatchlrUsageError(f"--storage {masked}: give a file, e.g. sqlite:///batchlr.db; an in-memory database keeps nothing")
    path = Path(parsed.database)
    if not create and not path.is_file():
        raise BatchlrError(f"--storage {masked}: no such file; run 'batchlr run' first or point --storage at a study file")
    if create and not path.exists():
        parent = path.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise BatchlrError(f"--storage {masked}: cannot create a file in {parent}; choose a writable directory")
