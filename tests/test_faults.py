"""Faults of processes, files and storages, made for real: signals, full and read-only disks,
lost database connections. Nothing is lost, and each fault is one line that names it."""

from __future__ import annotations

import contextlib
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import torch
from optuna.trial import TrialState

from tests.conftest import copy_database
from tests.test_workers import (
    FINISHED,
    running_trial_of,
    start,
    wait_all,
    worker_args,
)


def batchlr(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "batchlr", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def tiny_run(storage: str, *extra: str) -> list[str]:
    return [
        "run",
        "--storage",
        storage,
        "--dataset",
        "digits",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "-q",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained_study(tmp_path_factory) -> Path:
    """A SQLite file holding study "s" of one finished trial, trained once for the module."""
    database = tmp_path_factory.mktemp("trained") / "s.db"
    result = batchlr(*tiny_run(f"sqlite:///{database}", "--study", "s", "--n-trials", "1"))
    assert result.returncode == 0, result.stderr
    return database


def resume(storage: str, study: str, n_trials: int) -> list[str]:
    return [
        "run",
        "--storage",
        storage,
        "--study",
        study,
        "--device",
        "cpu",
        "-q",
        "--n-trials",
        str(n_trials),
    ]


def children_of(parent: subprocess.Popen, count: int, timeout: float = 120) -> list[int]:
    """The pids of the ``count`` processes ``parent`` started, once it has started them all."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(parent.pid)], capture_output=True, text=True
        ).stdout
        if len(pids := [int(pid) for pid in listing.split()]) >= count:
            return pids
        time.sleep(0.2)
    raise AssertionError(
        f"process {parent.pid} started fewer than {count} processes in {timeout} s"
    )


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, ended but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def retries_of(trials: list[optuna.trial.FrozenTrial], number: int) -> int:
    return sum(trial.system_attrs.get("retry_history", [None])[-1] == number for trial in trials)


@contextlib.contextmanager
def small_disk(path: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path``: a disk that can really fill up or turn read-only."""
    path.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    ).returncode:
        pytest.skip("needs permission to mount a tmpfs (root, as in CI)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(disk: Path) -> None:
    subprocess.run(["dd", "if=/dev/zero", f"of={disk / 'filler'}", "bs=64k"], capture_output=True)


# Processes


@pytest.mark.process
@pytest.mark.parametrize("parent_signal", [signal.SIGKILL, signal.SIGHUP])
def test_workers_die_with_their_parent_and_their_trials_are_retried(tmp_path, parent_signal):
    storage = f"sqlite:///{tmp_path / 'w.db'}"
    parent = start([*worker_args(storage, "w", 40), "--workers", "2"], tmp_path / "log")
    workers = children_of(parent, 2)
    running_trial_of(storage, "w", pid=None)
    parent.send_signal(parent_signal)
    parent.wait(timeout=60)
    # Generous: on a loaded machine a worker may need a while to end its trial and exit.
    deadline = time.monotonic() + 120
    while any(map(alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(map(alive, workers)), (tmp_path / "log").read_text()
    stopped = optuna.load_study(study_name="w", storage=storage).trials
    assert TrialState.RUNNING not in {trial.state for trial in stopped}
    interrupted = [
        trial.number for trial in stopped if trial.user_attrs.get("reason") == "interrupted"
    ]
    assert interrupted and all(retries_of(stopped, number) == 1 for number in interrupted)
    again = batchlr(*resume(storage, "w", len(interrupted)))
    assert again.returncode == 0, again.stderr
    trials = optuna.load_study(study_name="w", storage=storage).trials
    retried = [trial for trial in trials if trial.system_attrs.get("failed_trial") in interrupted]
    assert len(retried) == len(interrupted) and all(trial.state in FINISHED for trial in retried)
    assert all(
        "reason" not in trial.user_attrs or trial.state == TrialState.PRUNED for trial in retried
    )


@pytest.mark.process
def test_two_quick_interrupts_queue_one_retry(tmp_path):
    storage = f"sqlite:///{tmp_path / 'i.db'}"
    worker = start(worker_args(storage, "i", 50), tmp_path / "log")
    trial = running_trial_of(storage, "i", worker.pid)
    worker.send_signal(signal.SIGINT)
    worker.send_signal(signal.SIGINT)
    assert worker.wait(timeout=120) == 130
    again = batchlr(*resume(storage, "i", 1))
    assert again.returncode == 0, again.stderr
    trials = optuna.load_study(study_name="i", storage=storage).trials
    assert retries_of(trials, trial.number) == 1
    assert trials[trial.number].state == TrialState.FAIL
    assert TrialState.RUNNING not in {t.state for t in trials}


# Atomic creation and writes


def until(happened: Callable[[], bool], process: subprocess.Popen, timeout: float = 120) -> None:
    """Return once ``happened()`` is true or ``process`` has ended, polling every 10 ms."""
    deadline = time.monotonic() + timeout
    while not happened() and process.poll() is None:
        assert time.monotonic() < deadline, f"nothing happened in {timeout} s"
        time.sleep(0.01)


def rows(database: Path, table: str) -> int:
    """Rows of ``table`` in a SQLite file being written by another process; 0 until it exists."""
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=0.1)
        ) as connection:
            return int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.mark.process
def test_a_study_killed_while_being_created_is_absent_or_whole(tmp_path):
    database = tmp_path / "c.db"
    storage = f"sqlite:///{database}"
    command = [
        sys.executable,
        "-m",
        "batchlr",
        *tiny_run(storage, "--study", "c", "--n-trials", "1"),
    ]
    # Killed as the file appears (its tables being made) and once the study is stored; a kill
    # during a trial is the workers' tests' subject.
    for stage in (database.exists, lambda: rows(database, "studies")):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        until(stage, process)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        if database.exists():
            names = [summary.study_name for summary in optuna.get_all_study_summaries(storage)]
            assert names in ([], ["c"])
            if names:
                assert "dataset" in optuna.load_study(study_name="c", storage=storage).user_attrs
    again = batchlr(*tiny_run(storage, "--study", "c", "--n-trials", "1"))
    assert again.returncode == 0, again.stderr
    assert optuna.load_study(study_name="c", storage=storage).get_trials(states=FINISHED)


@pytest.mark.process
def test_a_killed_refit_leaves_the_previous_model_and_an_unwritable_output_fails_before_training(
    trained_study, tmp_path
):
    storage = f"sqlite:///{copy_database(trained_study, tmp_path)}"
    model = tmp_path / "model.pt"
    torch.save({"previous": torch.ones(3)}, model)
    refit = [
        sys.executable,
        "-m",
        "batchlr",
        "refit",
        "s",
        "--storage",
        storage,
        "--output",
        str(model),
        "--device",
        "cpu",
    ]
    # Killed at once, and as its temporary file appears (or, if that was too quick to see, after).
    for stage in (lambda: True, lambda: any(tmp_path.glob(".model.pt.*.tmp"))):
        process = subprocess.Popen(refit, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        until(stage, process)
        process.kill()
        process.wait()
        weights = torch.load(model, weights_only=True)
        assert "previous" in weights or "0.weight" in weights["state_dict"]
    started = time.monotonic()
    missing = batchlr(
        "refit", "s", "--storage", storage, "--output", str(tmp_path / "no" / "model.pt")
    )
    directory = batchlr("refit", "s", "--storage", storage, "--output", str(tmp_path))
    assert (missing.returncode, directory.returncode) == (1, 2)
    assert "create it first" in missing.stderr and "is a directory" in directory.stderr
    assert time.monotonic() - started < 30  # no training ran


@pytest.mark.process
def test_a_full_disk_keeps_the_previous_export_and_names_the_cause(trained_study, tmp_path):
    storage = f"sqlite:///{copy_database(trained_study, tmp_path)}"
    with small_disk(tmp_path / "disk", "1m") as disk:
        best = disk / "best.json"
        best.write_text('{"previous": true}', encoding="utf-8")
        fill(disk)
        result = batchlr("export", "s", "--storage", storage, "--output", str(best))
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert "No space left on device" in result.stderr and "unchanged" in result.stderr
        assert best.read_text(encoding="utf-8") == '{"previous": true}'
        assert sorted(path.name for path in disk.iterdir()) == ["best.json", "filler"]


# Storage faults


@pytest.mark.process
def test_a_disk_that_fills_during_a_run_is_named_and_the_trial_retried(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        storage = f"sqlite:///{disk / 's.db'}"
        log = tmp_path / "log"
        run = start(
            tiny_run(storage, "--study", "s", "--n-trials", "100", "--epochs", "3")[1:], log
        )
        running_trial_of(storage, "s", run.pid)
        fill(disk)
        assert run.wait(timeout=120) == 1
        error = log.read_text().strip().splitlines()[-1]
        assert (
            error.startswith("Error: the storage failed: the disk is full")
            and "unexpected" not in error
        ), error
        (disk / "filler").unlink()
        again = batchlr(*resume(storage, "s", 1))
        assert again.returncode == 0, again.stderr
        trials = optuna.load_study(study_name="s", storage=storage).trials
        assert TrialState.RUNNING not in {trial.state for trial in trials}
        lost = [trial for trial in trials if trial.user_attrs.get("reason") == "worker lost"]
        assert lost and all(retries_of(trials, trial.number) == 1 for trial in lost)


@pytest.mark.process
def test_read_only_commands_work_on_a_read_only_database_and_runs_say_why_they_cannot(
    trained_study, tmp_path
):
    with small_disk(tmp_path / "disk") as disk:
        storage = f"sqlite:///{copy_database(trained_study, disk)}"
        before = (disk / "s.db").read_bytes()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        results = [
            batchlr("studies", "--storage", storage),
            batchlr("show", "s", "--storage", storage),
            batchlr("export", "s", "--storage", storage, "--output", str(tmp_path / "best.json")),
            batchlr("report", "s", "--storage", storage, "--output", str(tmp_path / "report")),
        ]
        assert [result.returncode for result in results] == [0, 0, 0, 0], [
            result.stderr for result in results
        ]
        assert (
            "warning: not attached to the study's artifacts" in results[3].stderr
            and (tmp_path / "report" / "index.html").is_file()
        )
        run = batchlr(*tiny_run(storage, "--study", "s", "--n-trials", "1"))
        assert run.returncode == 1 and "the database is read-only" in run.stderr, run.stderr
        assert (disk / "s.db").read_bytes() == before


@pytest.mark.process
def test_read_only_commands_never_write_to_a_writable_database(trained_study, tmp_path):
    database = copy_database(trained_study, tmp_path)
    storage = f"sqlite:///{database}"
    before = (database.stat().st_mtime_ns, database.read_bytes())
    for command in (["studies"], ["show", "s"], ["show", "s", "--as-config"]):
        assert batchlr(*command, "--storage", storage).returncode == 0
    # SQLite's readers may leave the shared-memory index (-shm) beside it; the database is untouched.
    assert (database.stat().st_mtime_ns, database.read_bytes()) == before
    assert not (tmp_path / "s.db-wal").exists() or not (tmp_path / "s.db-wal").stat().st_size


class FlakyProxy:
    """A TCP proxy to PostgreSQL that can drop every connection and refuse new ones for a while:
    a database server that restarts, seen from batchlr."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.down_until = 0.0
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def outage(self, seconds: float) -> None:
        self.down_until = time.monotonic() + seconds
        for connection in list(self.connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            if time.monotonic() < self.down_until:
                client.close()
                continue
            server = socket.create_connection(self.target)
            self.connections += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        # shutdown before close: closing a socket that the other direction's thread is blocked
        # reading sends no FIN, so the server would keep the session (and its locks) for ever,
        # which no restarting server does.
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                end.close()


@pytest.mark.process
def test_a_lost_postgresql_connection_is_made_again_and_the_run_goes_on(postgres_url, tmp_path):
    proxy = FlakyProxy()
    study = f"flaky-{uuid.uuid4().hex[:8]}"
    storage = postgres_url.replace(":5432/", f":{proxy.port}/")
    log = tmp_path / "log"
    try:
        run = start(
            tiny_run(storage, "--study", study, "--n-trials", "4", "--epochs", "3")[1:], log
        )
        running_trial_of(postgres_url, study, run.pid)
        proxy.outage(4)
        # Connections are made again with back-off; a query in flight when the server went
        # away ends the worker with one line naming the cause, and the next run retries its trial.
        if wait_all([run]) != [0]:
            assert (
                "the connection to the database server was lost" in log.read_text().splitlines()[-1]
            ), log.read_text()
            assert wait_all(
                [
                    start(
                        [
                            "--storage",
                            storage,
                            "--study",
                            study,
                            "--device",
                            "cpu",
                            "-q",
                            "--n-trials",
                            "4",
                        ],
                        log,
                    )
                ]
            ) == [0]
        trials = optuna.load_study(study_name=study, storage=postgres_url).trials
        assert sum(trial.state in FINISHED for trial in trials) >= 4
        assert TrialState.RUNNING not in {trial.state for trial in trials}
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=study, storage=postgres_url)


def test_postgresql_read_only_commands_open_read_only_sessions(postgres_url):
    from batchlr.studies.store import open_storage

    storage = open_storage(postgres_url, access="read")
    with (
        pytest.raises(sqlalchemy.exc.SQLAlchemyError, match="read-only"),
        storage.engine.begin() as connection,
    ):
        connection.exec_driver_sql("CREATE TEMP TABLE batchlr_probe (x int)")
