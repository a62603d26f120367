"""Real concurrency: worker processes on one SQLite file and on PostgreSQL, SIGKILL and SIGINT."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import types
import uuid
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from batchlr.cli import main
from tests.conftest import own_postgres_database

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def worker_args(storage: str, study: str, max_trials: int) -> list[str]:
    return [
        "--storage",
        storage,
        "--study",
        study,
        "--dataset",
        "digits",
        "--folds",
        "2",
        "--epochs",
        "3",
        "--device",
        "cpu",
        "--n-trials",
        "100",
        "--max-trials",
        str(max_trials),
        "--heartbeat",
        "2",
    ]


def start(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "batchlr", "run", *args],
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def wait_all(workers: list[subprocess.Popen], timeout: float = 240) -> list[int]:
    deadline = time.monotonic() + timeout
    return [worker.wait(timeout=max(1, deadline - time.monotonic())) for worker in workers]


def running_trial_of(
    storage: str, study: str, pid: int | None, timeout: float = 120
) -> optuna.trial.FrozenTrial:
    """Wait until worker ``pid`` (any worker, for None) runs a trial (one whose user attr ``worker`` names it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            trials = optuna.load_study(study_name=study, storage=storage).get_trials(
                states=(TrialState.RUNNING,)
            )
        except KeyError:
            trials = []
        for trial in trials:
            worker = trial.user_attrs.get("worker")
            if worker and (pid is None or worker.get("pid") == pid):
                return trial
        time.sleep(0.2)
    raise AssertionError(f"worker {pid} ran no trial in {timeout} s")


@pytest.mark.process
def test_three_workers_share_one_sqlite_file(tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    workers = [start(worker_args(storage, "s", 12), tmp_path / "log") for _ in range(3)]
    assert wait_all(workers) == [0, 0, 0], (tmp_path / "log").read_text()
    trials = optuna.load_study(study_name="s", storage=storage).trials
    finished = [trial for trial in trials if trial.state in FINISHED]
    assert 12 <= len(finished) <= 14 and len(finished) == len(trials), [t.state for t in trials]
    assert len({trial.user_attrs["worker"]["pid"] for trial in finished}) >= 2
    assert "database is locked" not in (tmp_path / "log").read_text()


@pytest.mark.process
def test_a_killed_worker_on_postgresql_loses_no_trial_and_one_rerun_leaves_none_running_or_waiting(
    postgres_url,
    tmp_path,
):
    study = f"batchlr-kill-{uuid.uuid4().hex[:8]}"
    # Heartbeats that go stale only long after the test: the dead worker's pid alone frees its trial.
    args = [*worker_args(postgres_url, study, 8), "--heartbeat", "300"]
    log = tmp_path / "log"
    try:
        workers = [start(args, log) for _ in range(4)]
        running_trial_of(postgres_url, study, workers[0].pid)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        assert wait_all(workers[1:]) == [0, 0, 0], log.read_text()
        before = optuna.load_study(study_name=study, storage=postgres_url).trials
        assert wait_all([start(args, log)]) == [0], log.read_text()
        trials = optuna.load_study(study_name=study, storage=postgres_url).trials
        states = [trial.state for trial in trials]
        assert TrialState.RUNNING not in states and TrialState.WAITING not in states, states
        assert 8 <= sum(state in FINISHED for state in states) <= 8 + 3
        kept = [trial.number for trial in before if trial.state == TrialState.COMPLETE]
        assert all(trials[number].state == TrialState.COMPLETE for number in kept)
        # The trial it ran when killed (the one seen running, or the next if that just ended).
        (victim,) = [
            trial
            for trial in trials
            if trial.user_attrs["worker"]["pid"] == workers[0].pid and trial.state not in FINISHED
        ]
        assert victim.state == TrialState.FAIL and victim.user_attrs["reason"] == "worker lost"
        retries = [
            trial for trial in trials if trial.system_attrs.get("failed_trial") == victim.number
        ]
        # The victim may die before it samples: its retry then samples afresh.
        assert (
            len(retries) == 1
            and retries[0].state in FINISHED
            and victim.params.items() <= retries[0].params.items()
        )
        assert (
            len({trial.user_attrs.get("worker", {}).get("pid") for trial in trials} - {None}) >= 2
        )
    finally:
        optuna.delete_study(study_name=study, storage=postgres_url)


@pytest.mark.process
def test_sigint_fails_the_running_trial_and_the_same_command_resumes(tmp_path):
    storage = f"sqlite:///{tmp_path / 'one.db'}"
    args = worker_args(storage, "s", 50)
    worker = start(args, tmp_path / "log")
    trial = running_trial_of(storage, "s", worker.pid)
    worker.send_signal(signal.SIGINT)
    assert worker.wait(timeout=120) == 130
    log = (tmp_path / "log").read_text()
    assert "interrupted" in log and "Traceback" not in log and "Warning" not in log
    stopped = optuna.load_study(study_name="s", storage=storage).trials[trial.number]
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["reason"] == "interrupted"
    listing = CliRunner().invoke(main, ["studies", "--storage", storage]).output.splitlines()
    assert dict(zip(listing[0].split(), listing[1].split(), strict=True))["waiting"] == "1"
    again = start(
        [*args[:-6], "--n-trials", "1", "--device", "cpu", "--heartbeat", "2"], tmp_path / "log"
    )
    assert again.wait(timeout=120) == 0
    trials = optuna.load_study(study_name="s", storage=storage).trials
    retry = trials[-1]
    assert retry.number > trial.number and retry.state in FINISHED
    assert retry.system_attrs["failed_trial"] == trial.number and retry.params == stopped.params
    assert retry.user_attrs.get("reason") != "interrupted"
    assert TrialState.RUNNING not in {t.state for t in trials}


@pytest.mark.process
def test_workers_option_starts_local_workers_and_speaks_for_them_once(tmp_path):
    storage = f"sqlite:///{tmp_path / 'local.db'}"
    args = [*worker_args(storage, "w", 100), "--n-trials", "2"]
    command = [sys.executable, "-m", "batchlr", "run", *args, "--workers", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    finished = optuna.load_study(study_name="w", storage=storage).get_trials(states=FINISHED)
    assert len(finished) == 4
    assert len({trial.user_attrs["worker"]["pid"] for trial in finished}) == 2
    assert len({tuple(sorted(trial.params.items())) for trial in finished}) == 4, (
        "the workers' samplers differ"
    )
    # One opening (saying what --n-trials means here), a line per trial of either worker, one outcome.
    lines = result.stdout.splitlines()
    assert sum(line.startswith("study w ") for line in lines) == 1, result.stdout
    assert (
        "  2 local workers, 2 trials each (4 in all), all stopping once the study holds 100 finished trials"
        in lines
    )
    assert sorted(line.split()[1] for line in lines if line.startswith("trial ")) == [
        "0",
        "1",
        "2",
        "3",
    ], result.stdout
    assert sum(line.startswith("best: ") for line in lines) == 1, result.stdout


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["batchlr", "run", "--workers", "3", "--study", "s"], ["--study", "s"]),
        (["batchlr", "--debug", "run", "--workers=2", "--n-trials", "4"], ["--n-trials", "4"]),
    ],
)
def test_worker_arguments_drop_only_the_workers_option(argv, expected):
    from batchlr.studies.run import worker_arguments

    assert worker_arguments(argv) == expected


class RecordingObjective:
    """Stands in for the cross-validation objective: notes the worker attr its trial holds in
    the storage before it samples anything, and scores 0.5."""

    def __init__(self) -> None:
        self.trainer = types.SimpleNamespace(device="cpu")
        self.workers_seen: list[object] = []

    def __call__(self, trial: optuna.Trial) -> float:
        self.workers_seen.append(
            trial.study._storage.get_trial(trial._trial_id).user_attrs.get("worker")
        )
        trial.suggest_float("x", 0, 1)
        return 0.5


def opened_study(storage_url: str, objective: RecordingObjective):
    from batchlr.studies.run import OpenStudy
    from batchlr.studies.store import open_storage

    storage = open_storage(storage_url, access="create", heartbeat=30)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    return OpenStudy(study, storage, spec=None, objective=objective, previous_trials=0)


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_trial_records_its_worker_before_it_samples(sqlite_url):
    objective = RecordingObjective()
    opened_study(sqlite_url, objective).optimize(n_trials=2, timeout=None)
    assert [seen["pid"] for seen in objective.workers_seen] == [os.getpid()] * 2


@pytest.mark.process
def test_retries_of_dead_workers_run_even_once_max_trials_is_reached(sqlite_url):
    objective = RecordingObjective()
    opened = opened_study(sqlite_url, objective)
    opened.optimize(n_trials=3, timeout=None)
    # A worker of this host that died mid-trial, with the study at its --max-trials.
    orphan = opened.storage.create_new_trial(opened.study._study_id)
    opened.storage.set_trial_user_attr(
        orphan, "worker", {"host": socket.gethostname(), "pid": dead_pid(), "device": "cpu"}
    )
    opened.storage.set_trial_param(orphan, "x", 0.25, optuna.distributions.FloatDistribution(0, 1))
    opened.optimize(n_trials=10, timeout=None, max_trials=3)
    trials = opened.study.get_trials()
    assert [trial.state for trial in trials] == [TrialState.COMPLETE] * 3 + [
        TrialState.FAIL,
        TrialState.COMPLETE,
    ]
    assert (
        trials[3].user_attrs["reason"] == "worker lost"
        and trials[4].system_attrs["failed_trial"] == 3
    )
    assert trials[4].params == {"x": 0.25}


def test_a_signal_interrupts_at_once_only_while_computing_and_else_at_the_next_check(capsys):
    from batchlr.studies.run import PARENT_GONE, stop_gracefully_on_signals

    class InterruptedWhileFinalized:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)  # its handler runs, and raises, inside __del__

    def terminate_self_and_wait() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)  # interrupted at once, long before this ends

    signals = (signal.SIGINT, signal.SIGTERM, PARENT_GONE)
    handlers, hook = {signum: signal.getsignal(signum) for signum in signals}, sys.unraisablehook
    try:
        interrupts = stop_gracefully_on_signals()
        interrupts.check()  # no signal yet: nothing to raise
        # Outside computing (a storage lock may be held), a signal is only noted...
        os.kill(os.getpid(), PARENT_GONE)
        os.kill(os.getpid(), PARENT_GONE)  # the kernel repeats it as the dead parent's threads end
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()  # ...and raised at the next check
        with pytest.raises(KeyboardInterrupt), interrupts.computing():
            pass  # a signal that came before the block raises on entering it

        interrupts = stop_gracefully_on_signals()
        with pytest.raises(KeyboardInterrupt), interrupts.computing():
            terminate_self_and_wait()
        assert signal.getsignal(PARENT_GONE) == signal.SIG_IGN  # later repeats do not end it harder

        interrupts = stop_gracefully_on_signals()
        with interrupts.computing():
            InterruptedWhileFinalized()  # Python drops what a finalizer raises...
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()  # ...and the next check raises it again
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        sys.unraisablehook = hook
    assert "Exception ignored" not in capsys.readouterr().err


def test_no_two_seeds_give_a_resumed_run_the_sampler_seed_of_another():
    from batchlr.search.space import SEED_LIMIT
    from batchlr.studies.run import sampler_seed

    assert sampler_seed(7, 0) == 7, "a new study's sampler keeps the seed given"
    # Two workers, seeds 0 and 1, opening the study before and after the first trial.
    assert sampler_seed(1, 0) != sampler_seed(0, 1)
    seeds = {sampler_seed(seed, trials) for seed in range(20) for trials in range(20)}
    assert len(seeds) == 400 and all(0 <= seed < SEED_LIMIT for seed in seeds)
    assert 0 <= sampler_seed(SEED_LIMIT - 1, 5) < SEED_LIMIT


@pytest.mark.process
def test_ctrl_c_stops_every_worker_of_workers_and_says_so_once(tmp_path):
    storage = f"sqlite:///{tmp_path / 'c.db'}"
    log = tmp_path / "log"
    parent = start([*worker_args(storage, "c", 50), "--workers", "2"], log)
    running_trial_of(storage, "c", pid=None)
    parent.send_signal(signal.SIGINT)
    assert parent.wait(timeout=120) == 130, log.read_text()
    lines = log.read_text().splitlines()
    # One line for all workers: the first worker's, which on a loaded machine may still have
    # been starting (it then had no trial to mark).
    assert [line for line in lines if line.startswith("Error: ")] in (
        [
            "Error: interrupted: the running trial is marked FAIL (reason interrupted); "
            "run the same command to resume, retrying it first"
        ],
        ["Error: interrupted; run the same command again"],
    ), lines
    assert not any(line.startswith("best: ") for line in lines)
    trials = optuna.load_study(study_name="c", storage=storage).trials
    assert TrialState.RUNNING not in {trial.state for trial in trials}


@pytest.mark.process
def test_workers_starting_together_on_an_empty_database_each_keep_at_most_one_connection():
    # A Slurm array starts its workers at once: all but one lose the race to lay out the
    # tables, and a lost attempt's connections must not stay open for the worker's life.
    with own_postgres_database("race") as url:
        code = (  # imported, each waits for the word to open, so that they open at once
            "import sys; from batchlr.studies.store import open_storage; "
            "print('ready', flush=True); sys.stdin.readline(); "
            f"storage = open_storage({url!r}, access='create'); "
            "storage.get_all_studies(); print('open', flush=True); sys.stdin.read()"
        )
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", code],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        try:
            for worker in workers:
                assert _line_within(worker, 120) == "ready\n"
            for worker in workers:
                worker.stdin.write("go\n")
                worker.stdin.flush()
            for worker in workers:
                assert _line_within(worker, 120) == "open\n"
            held = batchlr_connections(url)
            assert sorted(held) == sorted(f"batchlr {worker.pid}" for worker in workers)
            assert set(held.values()) == {1}, held
        finally:
            for worker in workers:
                worker.kill()
                worker.wait(timeout=60)


def _line_within(process: subprocess.Popen, timeout: float) -> str:
    """The next line ``process`` writes to its stdout pipe, waiting at most ``timeout`` s."""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            process.kill()
            raise AssertionError(f"no line in {timeout} s: {process.communicate()[1]}")
    return process.stdout.readline()


def batchlr_connections(postgres_url: str) -> dict[str, int]:
    """The open connections of batchlr processes to ``postgres_url``'s database, by application name."""
    import sqlalchemy

    database = postgres_url.rsplit("/", 1)[1]
    engine = sqlalchemy.create_engine(postgres_url.replace("postgresql:", "postgresql+psycopg:"))
    try:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT application_name, count(*) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name LIKE 'batchlr %%' "
                "GROUP BY application_name",
                (database,),
            )
            return dict(rows.all())  # type: ignore[arg-type]
    finally:
        engine.dispose()


@pytest.mark.process
def test_a_worker_holds_at_most_one_postgresql_connection_heartbeats_included(
    postgres_url, tmp_path
):
    study = f"batchlr-budget-{uuid.uuid4().hex[:8]}"
    # Optuna lays out a new database's tables on two connections at once: done here, first.
    optuna.storages.RDBStorage(postgres_url).engine.dispose()
    # heartbeats every second, so that the heartbeat thread and the trial's meet often
    args = [*worker_args(postgres_url, study, 4), "--heartbeat", "1", "--workers", "2"]
    parent = start(args, tmp_path / "log")
    peaks: dict[str, int] = {}
    samples = parent_seen = 0
    try:
        while parent.poll() is None:
            held = batchlr_connections(postgres_url)
            for name, count in held.items():
                peaks[name] = max(peaks.get(name, 0), count)
            samples += 1
            parent_seen += f"batchlr {parent.pid}" in held
            time.sleep(0.05)
        assert parent.returncode == 0, (tmp_path / "log").read_text()
        finished = optuna.load_study(study_name=study, storage=postgres_url).trials
        assert 4 <= sum(trial.state in FINISHED for trial in finished) <= 5  # one each at most past
        workers = set(peaks) - {f"batchlr {parent.pid}"}
        assert len(workers) == 2 and all(peaks[name] == 1 for name in workers), peaks
        # The parent reads the study's progress every second, on a connection it then closes.
        assert peaks.get(f"batchlr {parent.pid}", 0) <= 1 and parent_seen < samples / 2
    finally:
        parent.kill()
        optuna.delete_study(study_name=study, storage=postgres_url)
