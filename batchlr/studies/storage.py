"""Opening Optuna storages from URLs, with passwords kept out of every message."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from sqlalchemy.engine import URL, make_url

from batchlr.errors import BatchlrError, BatchlrUsageError

DEFAULT_STORAGE = "sqlite:///batchlr.db"
STORAGE_ENV = "BATCHLR_STORAGE"
# Seconds a SQLite writer waits for another process's lock before failing.
SQLITE_BUSY_TIMEOUT = 60
DEFAULT_HEARTBEAT = 30
# Workers that open one new database at once race to create its tables; the losers retry.
SCHEMA_RACE_RETRIES = 4


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``; text that is no URL comes back unchanged."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def mask_command_line(arguments: list[str]) -> str:
    """The command line with the password of every URL in it (``--storage URL`` or ``--storage=URL``) masked."""
    masked = []
    for argument in arguments:
        option, equals, value = argument.partition("=") if argument.startswith("--") else ("", "", argument)
        masked.append(f"{option}{equals}{mask_url(value)}" if "://" in value else argument)
    return " ".join(masked)


def open_storage(url: str, *, create: bool, heartbeat: int | None = None) -> optuna.storages.RDBStorage:
    """Open the relational storage at ``url``.

    With ``create=False`` a SQLite file must already exist, so that read-only commands
    never leave an empty database behind a typo. A SQLite file is switched to write-ahead
    logging, so that readers never block the one writer, and writers wait for each other's
    locks for up to a minute instead of failing with "database is locked".

    With ``heartbeat`` seconds, a running trial records a heartbeat that often; one silent
    for twice that long (a worker that died) is marked FAIL by the next worker to look, and
    retried once with the same params (Optuna's RetryHeartbeatStaleTrialCallback, so the retry's
    system attr ``failed_trial`` names it).

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
        storage = _create_storage(url, engine_kwargs, heartbeat)
        if parsed.get_backend_name() == "sqlite":
            with storage.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA journal_mode=WAL")
        return storage
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


def _create_storage(url: str, engine_kwargs: dict[str, Any], heartbeat: int | None) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage, retried when another worker is creating the same new database's tables."""
    options: dict[str, Any] = {}
    with warnings.catch_warnings():
        # Heartbeats are "experimental" in Optuna since 2.9; batchlr depends on them knowingly.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if heartbeat:
            options = {
                "heartbeat_interval": heartbeat,
                "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
            }
        attempt = 1
        while True:
            try:
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **options)
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as error:
                racing = "alembic_version" in str(error) or "already exists" in str(error)
                if not racing or attempt == SCHEMA_RACE_RETRIES:
                    raise
                time.sleep(attempt)
                attempt += 1


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
