"""Opening Optuna storages from URLs, with passwords kept out of every message."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import optuna
import sqlalchemy.event
import sqlalchemy.exc
from sqlalchemy.engine import URL, make_url

from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.studies.store.liveness import LiveRDBStorage
from batchlr.studies.store.proxy import (
    PROXY_CONNECTIONS,
    LiveGrpcStorage,
    is_proxy_url,
    open_proxy,
    serve,
)
from batchlr.studies.store.retries import retry_stale_trial
from batchlr.studies.store.secrets import mask_url, redact

DEFAULT_STORAGE = "sqlite:///batchlr.db"
LiveStorage = LiveRDBStorage | LiveGrpcStorage
"""What :func:`open_storage` opens: a database, or the gRPC proxy of one, with liveness."""
Access = Literal["read", "write", "create"]
STORAGE_ENV = "BATCHLR_STORAGE"
# Seconds a SQLite writer waits for another process's lock before failing.
SQLITE_BUSY_TIMEOUT = 60
DEFAULT_HEARTBEAT = 30
DIRECT_CONNECTIONS = 1
"""Database connections a process holds at most on a server: PostgreSQL allows 100 by default,
and a GPU cluster may run hundreds of workers. The trial's thread and its heartbeat's take
turns with the one connection, each for one short transaction. (The first process ever to
open a new database holds two for the moment Optuna lays out its tables.)"""
# Seconds a thread waits for the process's connection before the storage call fails.
POOL_TIMEOUT = 120
# Workers that open one new database at once race to create its tables; the losers retry.
SCHEMA_RACE_RETRIES = 4
# Seconds between attempts to reach a database server that went away (a restart, a network
# glitch) before a worker gives up, about half a minute in all.
RECONNECT_DELAYS = (1, 2, 4, 8, 16)
FAULT_REMEDY = (
    "completed trials are kept; fix it, then run the same command to retry the running trial"
)
# What other commands, which leave no trial behind, say instead.
RETRY_REMEDY = "fix it, then run the same command again"
# What installs each driver SQLAlchemy may ask for.
DRIVER_PACKAGES = {
    "psycopg": "pip install 'batchlr[postgres]'",
    "psycopg2": "pip install psycopg2-binary, or use postgresql+psycopg:// after pip install 'batchlr[postgres]'",
    "pymysql": "pip install pymysql",
    "MySQLdb": "pip install mysqlclient, or use mysql+pymysql:// after pip install pymysql",
    "mysql": "pip install mysql-connector-python",
    "oracledb": "pip install oracledb",
    "pyodbc": "pip install pyodbc",
}


def open_storage(
    url: str,
    *,
    access: Access,
    heartbeat: int | None = None,
    connections: int = DIRECT_CONNECTIONS,
) -> LiveStorage:
    """Open the relational storage at ``url``, or the storage proxy at ``grpc://HOST:PORT``
    (see :mod:`batchlr.studies.store.proxy`).

    ``access`` is ``"read"`` (the read-only commands), ``"write"`` or ``"create"``. Unless
    it is ``"create"``, a SQLite file must already exist, so that a typo leaves no empty
    database behind. With ``"read"`` the storage is opened read-only and never written to:
    a SQLite file may be a read-only file, and a server session refuses writes. Otherwise a
    SQLite file is switched to write-ahead logging, so that readers never block the one
    writer, and writers wait for each other's locks for up to a minute instead of failing
    with "database is locked"; a connection to a server that is lost is made again, with
    back-off (see :data:`RECONNECT_DELAYS`).

    With ``heartbeat`` seconds, a running trial refreshes its liveness stamp that often; one
    whose stamp a worker has watched unchanged for twice that long (its worker died) is
    marked FAIL by that worker and retried with the same params (see
    :mod:`batchlr.studies.store.liveness` and :func:`batchlr.studies.store.retries.queue_retry`).

    A database server is held to ``connections`` connections at most. Through the proxy
    ``access`` is not enforced: the proxy's own connections write, and read-only commands
    make only calls that read.

    Raises:
        BatchlrError: for a malformed URL, a missing driver, a path that cannot be written,
            a file that is no database, or a server or proxy that does not answer.
    """
    if is_proxy_url(url):
        return open_proxy(url, heartbeat)
    masked = mask_url(url)
    parsed = _parse(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        _check_sqlite_path(parsed, masked, access)
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT}}
        if access == "read":
            url = _read_only_sqlite(parsed).render_as_string(hide_password=False)
    else:
        engine_kwargs = _server_engine_kwargs(parsed, access)
    try:
        storage = _create_storage(url, engine_kwargs, heartbeat, None if sqlite else connections)
        if sqlite and access != "read":
            with storage.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA journal_mode=WAL")
        if not sqlite:
            sqlalchemy.event.listen(storage.engine, "do_connect", _connect_with_back_off)
        return storage
    except ModuleNotFoundError as error:
        install = DRIVER_PACKAGES.get(str(error.name), f"pip install {error.name}")
        raise BatchlrError(
            f"--storage {masked}: the database driver {error.name!r} is not installed; {install}"
        ) from error
    except sqlalchemy.exc.NoSuchModuleError as error:
        raise BatchlrUsageError(
            f"--storage {masked}: unknown database kind; use sqlite:///FILE or postgresql://USER@HOST/DB"
        ) from error
    except (sqlalchemy.exc.SQLAlchemyError, RuntimeError) as error:
        detail = redact(str(getattr(error, "orig", None) or error).strip().splitlines()[0])
        cause = "the disk is full; " if _sqlite_disk_full(url) else ""
        raise BatchlrError(f"cannot open storage {masked}: {cause}{detail}") from error


def close_idle_connections(storage: LiveStorage) -> None:
    """Close the database connections ``storage`` keeps open between its calls, for a process
    that reads now and then (the parent of ``run --workers``, following their progress), so
    that a node holds one connection per worker and none more. A proxy's storage holds none."""
    if isinstance(storage, optuna.storages.RDBStorage):
        storage.engine.dispose()


def _server_engine_kwargs(parsed: URL, access: Access) -> dict[str, Any]:
    """SQLAlchemy engine options for a database server: each connection checked before use,
    and on PostgreSQL named ``batchlr PID`` in ``pg_stat_activity`` and read-only for
    ``access`` "read"."""
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "postgresql":
        connect_args = {"application_name": f"batchlr {os.getpid()}"}
        if access == "read":
            connect_args["options"] = "-c default_transaction_read_only=on"
        kwargs["connect_args"] = connect_args
    return kwargs


def serve_storage_proxy(
    storage_url: str, host: str, port: int, ready: Callable[[int], None]
) -> None:
    """``batchlr storage-proxy``: serve the database at ``storage_url`` over gRPC at
    ``host``:``port`` on at most :data:`~batchlr.studies.store.proxy.PROXY_CONNECTIONS`
    connections until interrupted, calling ``ready`` with that count once it listens.

    Raises:
        BatchlrUsageError: for a proxy's URL, since a proxy serves a database.
        BatchlrError: when the database cannot be opened or the address cannot be bound.
    """
    if is_proxy_url(storage_url):
        raise BatchlrUsageError(
            f"--storage {storage_url}: a storage proxy serves a database; give its URL, "
            "e.g. postgresql://USER@HOST/DB"
        )
    storage = open_storage(storage_url, access="create", connections=PROXY_CONNECTIONS)
    serve(storage, host, port, lambda: ready(PROXY_CONNECTIONS))


def storage_fault(error: BaseException, url: str, remedy: str) -> BatchlrError | None:
    """The one-line error for the storage at ``url`` failing while in use, ending in
    ``remedy`` (:data:`FAULT_REMEDY` for a run), or None when ``error`` is no storage fault. Looks
    through the chain of causes, since Optuna wraps the database's errors
    (StorageInternalError) or hides them behind its own (an AssertionError)."""
    cause: BaseException | None = error
    while cause is not None:
        if type(cause).__module__.startswith("grpc") and hasattr(cause, "code"):
            return BatchlrError(
                f"the storage proxy failed: {_proxy_fault_cause(cause)} ({cause.code().name}); {remedy}"
            )
        if isinstance(cause, sqlalchemy.exc.DBAPIError | sqlite3.Error):
            detail = redact(str(getattr(cause, "orig", None) or cause).strip().splitlines()[0])
            return BatchlrError(
                f"the storage failed: {_fault_cause(detail, cause, url)} ({detail}); {remedy}"
            )
        cause = cause.__cause__ or cause.__context__
    return None


def _proxy_fault_cause(error: Any) -> str:
    """What a gRPC error of the proxy means, in a phrase."""
    if error.code().name in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
        return "the connection to it was lost (it stopped, or the network failed)"
    return redact(str(error.details() or "it refused the call").splitlines()[0])


def _fault_cause(detail: str, error: BaseException, url: str) -> str:
    lowered = detail.lower()
    if "full" in lowered or "no space" in lowered or _sqlite_disk_full(url):
        return "the disk is full"
    if "readonly" in lowered or "read-only" in lowered or "read only" in lowered:
        return "the database is read-only"
    if getattr(error, "connection_invalidated", False) or (
        isinstance(error, sqlalchemy.exc.OperationalError)
        and any(
            sign in lowered
            for sign in ("connect", "server closed", "terminating connection", "connection")
        )
    ):
        return "the connection to the database server was lost"
    return "the database refused a write"


def _sqlite_disk_full(url: str) -> bool:
    # SQLite reports a full disk as "disk I/O error" when it cannot grow its -wal or -shm file.
    try:
        parsed = make_url(url)
        return (
            parsed.get_backend_name() == "sqlite"
            and shutil.disk_usage(Path(str(parsed.database)).parent).free < 1 << 20
        )
    except (sqlalchemy.exc.ArgumentError, ValueError, OSError):
        return False


def _connect_with_back_off(
    dialect: Any, record: Any, cargs: tuple[Any, ...], cparams: dict[str, Any]
) -> Any:
    """Connect, waiting :data:`RECONNECT_DELAYS` between attempts while the server does not answer."""
    for delay in RECONNECT_DELAYS:
        try:
            return dialect.connect(*cargs, **cparams)
        except dialect.loaded_dbapi.OperationalError:
            time.sleep(delay)
    return None  # SQLAlchemy's own last attempt, whose error is the one reported


def _read_only_sqlite(parsed: URL) -> URL:
    """``parsed`` as a read-only SQLite URI; immutable (no locks, no -shm file) when the file
    or its directory cannot be written, as no one can be writing it then."""
    path = Path(str(parsed.database))
    query = {"mode": "ro", "uri": "true"}
    if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        query["immutable"] = "1"
    return parsed.set(database=f"file:{urllib.parse.quote(str(path))}", query=query)


def _create_storage(
    url: str, engine_kwargs: dict[str, Any], heartbeat: int | None, connections: int | None
) -> LiveRDBStorage:
    """Optuna's RDBStorage holding at most ``connections`` connections (None: SQLAlchemy's
    default pool), once the database's tables are known to be Optuna's; the set-up is retried
    when another worker is creating the same new database's tables.

    Optuna's set-up of a new database and its schema check hold two connections at once, so
    they run on an engine of their own that pools none: an attempt that loses the race to lay
    out the tables raises before its engine can be closed, and a pool would keep its
    connections open for the worker's life.
    """
    attempt = 1
    while True:
        try:
            setup = optuna.storages.RDBStorage(
                url,
                engine_kwargs={**engine_kwargs, "poolclass": sqlalchemy.pool.NullPool},
                skip_compatibility_check=True,
            )
            break
        # Losing the race surfaces as whichever error the statement that collided raises: a
        # duplicate row (IntegrityError), table or PostgreSQL type (ProgrammingError), a lock.
        except sqlalchemy.exc.DatabaseError as error:
            racing = "alembic_version" in str(error) or "already exists" in str(error)
            if not racing or attempt == SCHEMA_RACE_RETRIES:
                raise
            time.sleep(attempt)
            attempt += 1
    try:
        _check_schema(setup)
    finally:
        setup.engine.dispose()
    pool = (
        {}
        if connections is None
        else {"pool_size": connections, "max_overflow": 0, "pool_timeout": POOL_TIMEOUT}
    )
    storage = LiveRDBStorage(
        url,
        engine_kwargs={**engine_kwargs, **pool},
        skip_table_creation=True,
        skip_compatibility_check=True,
    )
    storage.watch(heartbeat, retry_stale_trial)
    return storage


def _check_schema(storage: optuna.storages.RDBStorage) -> None:
    """Refuse a database whose tables an older or newer Optuna laid out, as Optuna would.

    Raises:
        RuntimeError: naming the remedy, as Optuna's own check does.
    """
    current = storage.get_current_version()
    if current == storage.get_head_version():
        return
    if current in storage.get_all_versions():
        remedy = "run `optuna storage upgrade --storage URL` to upgrade its tables"
    else:
        remedy = "upgrade optuna, since a newer release laid out its tables"
    raise RuntimeError(
        f"the database's tables are not those of optuna {optuna.__version__}; {remedy}"
    )


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///FILE`` URL; ``None`` for other databases and SQLite in memory.

    Raises:
        BatchlrUsageError: for text that is no database URL.
    """
    parsed = _parse(url)
    if (
        parsed.get_backend_name() != "sqlite"
        or not parsed.database
        or parsed.database == ":memory:"
    ):
        return None
    return Path(parsed.database)


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError) as error:
        raise BatchlrUsageError(
            f"--storage {mask_url(url)!r} is not a database URL; use sqlite:///FILE or postgresql://USER@HOST/DB"
        ) from error


def check_sqlite_creatable(url: str) -> None:
    """The checks that :func:`open_storage` makes of a ``sqlite:///FILE`` URL before creating
    the file, without creating it: for a run that sets up for minutes before it opens a new
    file, so that a --storage it cannot use is refused first.

    Raises:
        BatchlrError: as :func:`open_storage` would for the path.
    """
    _check_sqlite_path(_parse(url), mask_url(url), "create")


def _check_sqlite_path(parsed: URL, masked: str, access: Access) -> None:
    if not parsed.database or parsed.database == ":memory:":
        raise BatchlrUsageError(
            f"--storage {masked}: give a file, e.g. sqlite:///batchlr.db; an in-memory database keeps nothing"
        )
    path = Path(parsed.database)
    if access != "create" and not path.is_file():
        raise BatchlrError(
            f"--storage {masked}: no such file; run 'batchlr run' first or point --storage at a study file"
        )
    if access == "create" and not path.exists():
        parent = path.parent
        if not parent.exists():
            raise BatchlrError(
                f"--storage {masked}: there is no directory {parent}; create it first"
            )
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise BatchlrError(
                f"--storage {masked}: cannot create a file in {parent}; choose a writable directory"
            )
    if (
        access != "read"
        and path.exists()
        and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))
    ):
        # SQLite writes a -wal file beside the database, so the directory must be writable too.
        raise BatchlrError(
            f"--storage {masked}: the database is read-only (the file or its directory cannot be written); "
            "runs write trials to it: make both writable, or copy the file to a writable directory"
        )
