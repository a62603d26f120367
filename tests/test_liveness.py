"""Liveness stamps: a dead worker's trial failed and retried, judged by the checker's own clock."""

from __future__ import annotations

import warnings

import optuna
import pytest
from optuna.trial import TrialState

from batchlr.studies.store import open_storage
from batchlr.studies.store.liveness import ALIVE_ATTR

# Optuna warns that heartbeats go with optimize; these tests drive them by hand.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr("batchlr.studies.store.liveness.time.monotonic", clock)
    return clock


def fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def test_a_trial_whose_stamp_stops_is_failed_after_two_intervals_and_retried(sqlite_url, clock):
    worker = open_storage(sqlite_url, access="create", heartbeat=10)
    study = optuna.create_study(storage=worker, study_name="s", direction="maximize")
    trial = study.ask()
    trial.suggest_float("lr", 1e-3, 1.0, log=True)
    worker.record_heartbeat(trial._trial_id)
    # another worker, on a host whose wall clock may be anything
    checker = open_storage(sqlite_url, access="write", heartbeat=10)
    watched = optuna.load_study(study_name="s", storage=checker)
    fail_stale(watched)  # first seen: nothing to judge yet
    clock.now += 15
    worker.record_heartbeat(trial._trial_id)  # alive: its stamp changed
    fail_stale(watched)
    clock.now += 15
    fail_stale(watched)  # unchanged for 15 s, under two intervals
    assert watched.trials[0].state == TrialState.RUNNING
    clock.now += 6  # unchanged for 21 s: the worker is gone
    fail_stale(watched)
    failed, retry = watched.trials
    assert failed.state == TrialState.FAIL and ALIVE_ATTR in failed.system_attrs
    assert retry.state == TrialState.WAITING and retry.params == failed.params
    assert retry.system_attrs["failed_trial"] == failed.number


def test_a_checker_with_a_shorter_heartbeat_judges_by_the_stamping_workers(sqlite_url, clock):
    worker = open_storage(sqlite_url, access="create", heartbeat=30)
    study = optuna.create_study(storage=worker, study_name="s", direction="maximize")
    trial = study.ask()
    worker.record_heartbeat(trial._trial_id)
    checker = optuna.load_study(
        study_name="s", storage=open_storage(sqlite_url, access="write", heartbeat=1)
    )
    fail_stale(checker)
    clock.now += 59  # the worker beats every 30 s: not yet two of its intervals
    fail_stale(checker)
    assert [trial.state for trial in checker.trials] == [TrialState.RUNNING]
    clock.now += 2
    fail_stale(checker)
    assert [trial.state for trial in checker.trials] == [TrialState.FAIL, TrialState.WAITING]


def test_a_trial_that_never_stamped_is_judged_too_and_liveness_can_be_off(sqlite_url, clock):
    worker = open_storage(sqlite_url, access="create", heartbeat=None)
    study = optuna.create_study(storage=worker, study_name="s")
    study.ask()  # its worker died before its first stamp
    assert worker.get_heartbeat_interval() is None
    checker = optuna.load_study(
        study_name="s", storage=open_storage(sqlite_url, access="write", heartbeat=1)
    )
    fail_stale(checker)
    clock.now += 2.5
    fail_stale(checker)
    assert [trial.state for trial in checker.trials] == [TrialState.FAIL, TrialState.WAITING]


def test_a_last_sweep_waits_out_a_trial_no_live_process_here_runs_and_retries_it(sqlite_url):
    import os
    import threading
    import time

    from batchlr.objectives.trial_record import TrialRecord
    from batchlr.studies.store.retries import this_worker, watch_unknown_workers

    storage = open_storage(sqlite_url, access="create", heartbeat=1)
    study = optuna.create_study(storage=storage, study_name="s")
    study.ask()  # its worker died before it recorded itself
    alive = study.ask()  # a live process of this host (the test's parent) that stamps it
    worker = {**this_worker("cpu"), "pid": os.getppid()}
    TrialRecord(worker=worker).write(alive)
    stop = threading.Event()

    def stamp() -> None:
        while not stop.wait(0.2):
            storage.record_heartbeat(alive._trial_id)

    stamper = threading.Thread(target=stamp)
    stamper.start()
    started = time.monotonic()
    try:
        watch_unknown_workers(study, storage)
    finally:
        stop.set()
        stamper.join()
    assert time.monotonic() - started < 30
    states = [trial.state for trial in study.trials]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]


def test_a_dead_pid_is_judged_only_in_the_pid_space_it_was_numbered_in(sqlite_url, tmp_path):
    import subprocess
    import sys

    from batchlr.objectives.trial_record import TrialRecord
    from batchlr.studies.store import fail_orphaned_trials, this_worker

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    storage = open_storage(sqlite_url, access="create", heartbeat=600)
    study = optuna.create_study(storage=storage, study_name="s")
    # a container sharing this host's name numbers its own processes: its pid says nothing here
    elsewhere = study.ask()
    TrialRecord(worker={**this_worker("cpu"), "pid": gone.pid, "pid_space": "other"}).write(
        elsewhere
    )
    here = study.ask()
    TrialRecord(worker={**this_worker("cpu"), "pid": gone.pid}).write(here)
    fail_orphaned_trials(study, storage)
    states = {trial.number: trial.state for trial in study.trials}
    assert states[elsewhere.number] == TrialState.RUNNING  # left to its liveness stamp
    assert states[here.number] == TrialState.FAIL
