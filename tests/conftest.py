"""Shared fixtures: real data from ../shared/data, tiny settings, throwaway storages."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

# Set before any test module imports torch, which reads it once: the xdist workers share the
# cores, and OpenMP threads spinning for one another on a busy core make a step many times
# slower. Subprocesses inherit it.
os.environ["OMP_NUM_THREADS"] = "1"

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CIFAR_SUBSET = SHARED_DATA / "cifar10-subset" / "train"
MNIST_RAW = SHARED_DATA / "mnist" / "MNIST" / "raw"


# What a user's shell may set; a test that wants one sets it itself.
BATCHLR_ENVIRONMENT = ("BATCHLR_STORAGE", "BATCHLR_DATA_DIR", "BATCHLR_CACHE_DIR")


@pytest.fixture(scope="session", autouse=True)
def _outside_the_project(tmp_path_factory):
    """Run the session, module fixtures included, in an empty directory of its own.

    The README's demo leaves ./batchlr.db (and users keep ./data) in the project directory: a
    command under test that falls back on a default storage or data directory must meet
    neither, nor leave a file there.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("cwd"))
        for name in BATCHLR_ENVIRONMENT:
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(autouse=True)
def _own_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test in its own empty working directory, so that default storages never meet."""
    monkeypatch.chdir(tmp_path)
    # decoded image folders: never ~/.cache
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def copy_database(database: Path, directory: Path) -> Path:
    """A copy of a SQLite study file in ``directory``, whatever its -wal file still holds."""
    copy = directory / database.name
    with (
        contextlib.closing(sqlite3.connect(database)) as source,
        contextlib.closing(sqlite3.connect(copy)) as target,
    ):
        source.backup(target)
    return copy


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"


@contextlib.contextmanager
def own_postgres_database(purpose: str) -> Iterator[str]:
    """A new, empty database of this test process's own on the local PostgreSQL server, as a
    URL, dropped afterwards.

    The xdist workers, and other suites on the same machine, run at once: studies, tables and
    grants of one never meet another's.
    """
    name = f"batchlr_{purpose}_{os.getpid()}"
    server = sqlalchemy.create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
    )
    with server.connect() as connection:
        # A pid is unique among live processes; one left by a killed run of that pid goes.
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with server.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        server.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The session's database (see :func:`own_postgres_database`)."""
    with own_postgres_database("test") as url:
        yield url


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data sets; a missing folder is a broken checkout, so the tests fail rather than skip."""
    assert CIFAR_SUBSET.is_dir() and MNIST_RAW.is_dir(), f"real data missing under {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture
def dashboard():
    """Start `batchlr dashboard` for a storage, as a real process; returns its base URL once it answers."""
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    servers = []

    def serve(storage: str) -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [
            sys.executable,
            "-m",
            "batchlr",
            "dashboard",
            "--storage",
            storage,
            "--port",
            str(port),
        ]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        servers.append(server)
        base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 90
        while True:
            assert server.poll() is None, server.stdout.read().decode()
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as response:
                    json.load(response)
                return base
            except OSError:
                assert time.monotonic() < deadline, "dashboard did not answer in 90 s"
                time.sleep(0.5)

    yield serve
    for server in servers:
        server.terminate()
        server.wait(timeout=30)
