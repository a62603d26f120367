"""How many workers one PostgreSQL database sustains, directly and through the storage proxy.

Starts a study in a database of its own on ``--server`` and ``--workers`` worker processes,
``--proxy`` puts ``batchlr storage-proxy`` between them and the database. Once half of
``--trials`` have finished, a quarter of the workers are killed with SIGKILL; the others run
on to ``--trials``, then one worker is rerun. Prints trials per minute, database transactions
per second and connections at peak (``pg_stat_activity``), workers that failed, and after the
rerun the trials lost and those left RUNNING or WAITING.

``--mode storage`` (the default) drives a trial's storage calls without training: liveness
stamps, the worker attr, three params, three reports, the sweep for dead workers' trials
and the stop rule, as ``batchlr run`` makes them, each trial ``--trial-seconds`` long.
``--mode train`` runs ``batchlr run`` itself with tiny trials (digits, 2 folds x 1 epoch).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from common.proxy import start_proxy
from optuna.trial import TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
STUDY = "load"


def storage_worker(storage_url: str, trials: int, trial_seconds: float, heartbeat: int) -> None:
    """One worker of ``--mode storage``: batchlr's storage calls for each trial, no training."""
    from batchlr.objectives.trial_record import TrialRecord
    from batchlr.studies.store import (
        fail_orphaned_trials,
        open_storage,
        run_left_retries,
        this_worker,
    )

    storage = open_storage(storage_url, access="write", heartbeat=heartbeat)
    study = optuna.load_study(
        study_name=STUDY, storage=storage, sampler=optuna.samplers.RandomSampler()
    )

    def objective(trial: optuna.Trial) -> float:
        TrialRecord(worker=this_worker("cpu")).write(trial)
        trial.suggest_int("batch_size", 16, 512, log=True)
        trial.suggest_float("lr", 1e-5, 1.0, log=True)
        trial.suggest_categorical("optimizer", ["sgd", "adam", "rmsprop"])
        for step in range(3):
            time.sleep(trial_seconds / 3)
            trial.report(random.random(), step)
        return random.random()

    def sweep(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        fail_orphaned_trials(study, storage)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        if (
            sum(state in FINISHED for state in states) >= trials
            and TrialState.WAITING not in states
        ):
            study.stop()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fail_orphaned_trials(study, storage)
    study.optimize(objective, n_trials=10**9, callbacks=[sweep])
    fail_orphaned_trials(study, storage)
    run_left_retries(study, storage, objective)


class Database:
    """A database of the benchmark's own on the server, watched for the connections of
    batchlr's processes (named ``batchlr PID``) and for transactions, and dropped at the end."""

    def __init__(self, server: str) -> None:
        self.name = f"batchlr_load_{os.getpid()}"
        self.url = f"{server.rstrip('/')}/{self.name}"
        self._admin = sqlalchemy.create_engine(
            f"{server.rstrip('/')}/postgres".replace("postgresql:", "postgresql+psycopg:"),
            isolation_level="AUTOCOMMIT",
        )
        with self._admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
            connection.exec_driver_sql(f"CREATE DATABASE {self.name}")
        # Optuna lays out the tables on two connections at once: here, before any worker.
        optuna.storages.RDBStorage(self.url).engine.dispose()
        self.peak_connections = 0
        self._watching = True
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while self._watching:
            with self._admin.connect() as connection:
                count = connection.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = %s AND application_name LIKE 'batchlr %%'",
                    (self.name,),
                ).scalar_one()
            self.peak_connections = max(self.peak_connections, int(count))
            time.sleep(0.1)

    def transactions(self) -> int:
        with self._admin.connect() as connection:
            connection.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
            return int(
                connection.exec_driver_sql(
                    "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                    (self.name,),
                ).scalar_one()
            )

    def drop(self) -> None:
        self._watching = False
        self._watcher.join()
        with self._admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        self._admin.dispose()


def worker_command(args: argparse.Namespace, storage_url: str) -> list[str]:
    if args.mode == "storage":
        return [
            sys.executable,
            __file__,
            "--worker",
            storage_url,
            "--trials",
            str(args.trials),
            "--trial-seconds",
            str(args.trial_seconds),
            "--heartbeat",
            str(args.heartbeat),
        ]
    return [
        sys.executable,
        "-m",
        "batchlr",
        "run",
        "--storage",
        storage_url,
        "--study",
        STUDY,
        "--dataset",
        "digits",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--n-trials",
        "100000",
        "--max-trials",
        str(args.trials),
        "--heartbeat",
        str(args.heartbeat),
        "--quiet",
    ]


def finished_count(study: optuna.Study) -> int:
    return sum(trial.state in FINISHED for trial in study.get_trials(deepcopy=False))


def run(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    database = Database(args.server)
    proxy = None
    try:
        storage_url = database.url
        if args.proxy:
            proxy, storage_url = start_proxy(database.url, scratch / "proxy.log")
        if args.mode == "storage":
            optuna.create_study(study_name=STUDY, storage=database.url, direction="maximize")
        environment = {**os.environ, "OMP_NUM_THREADS": "1"}
        command = worker_command(args, storage_url)
        logs = [scratch / f"worker-{index}.log" for index in range(args.workers + 1)]
        started = time.monotonic()
        first_transactions = database.transactions()
        workers = []
        for log in logs[:-1]:
            with log.open("wb") as output:
                workers.append(
                    subprocess.Popen(
                        command, stdout=output, stderr=subprocess.STDOUT, env=environment
                    )
                )
        direct = optuna.storages.RDBStorage(database.url)
        study = None
        while study is None or finished_count(study) < args.trials // 2:
            if all(worker.poll() is not None for worker in workers):
                break
            time.sleep(0.5)
            with contextlib.suppress(KeyError):  # until a worker creates it
                study = study or optuna.load_study(study_name=STUDY, storage=direct)
        assert study is not None, "no worker created the study"
        complete_before = {
            trial.number for trial in study.get_trials(states=(TrialState.COMPLETE,))
        }
        killed = workers[: max(1, args.workers // 4)]
        for worker in killed:
            worker.send_signal(signal.SIGKILL)
            worker.wait()  # reaped, as a scheduler reaps its jobs: no zombie's pid looks alive
        survivors = workers[len(killed) :]
        exits = [worker.wait() for worker in survivors]
        seconds = time.monotonic() - started
        transactions = database.transactions() - first_transactions
        trials_done = finished_count(study)
        with logs[-1].open("wb") as output:
            rerun = subprocess.run(
                command, stdout=output, stderr=subprocess.STDOUT, env=environment
            )
        trials = study.get_trials()
        states = [trial.state for trial in trials]
        by_number = {trial.number: trial for trial in trials}
        lost = sum(by_number[number].state != TrialState.COMPLETE for number in complete_before)
        recovered = {
            number
            for trial in trials
            if trial.state in FINISHED
            for number in trial.system_attrs.get("retry_history", [])
        }
        lost += sum(
            trial.state == TrialState.FAIL and trial.number not in recovered for trial in trials
        )
        return {
            "workers": args.workers,
            "via": "proxy" if args.proxy else "direct",
            "trials_per_minute": trials_done / seconds * 60,
            "transactions_per_second": transactions / seconds,
            "peak_connections": database.peak_connections,
            "errors": sum(code != 0 for code in exits) + (rerun.returncode != 0),
            "killed": len(killed),
            "lost": lost,
            "left": states.count(TrialState.RUNNING) + states.count(TrialState.WAITING),
            "trials": len(trials),
        }
    finally:
        if proxy:
            proxy.terminate()  # SIGTERM, as a scheduler stops it (SIGINT may be ignored here)
            proxy.wait(timeout=60)
        database.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--proxy", action="store_true", help="Workers talk to a storage proxy.")
    parser.add_argument("--mode", choices=("storage", "train"), default="storage")
    parser.add_argument("--trials", type=int, default=400, help="Finished trials a run ends at.")
    parser.add_argument("--trial-seconds", type=float, default=1.0)
    parser.add_argument("--heartbeat", type=int, default=5)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        storage_worker(args.worker, args.trials, args.trial_seconds, args.heartbeat)
        return
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        result = run(args, Path(scratch))
    print(
        f"{'workers':>7} {'via':>6} {'trials/min':>10} {'db xact/s':>9} {'peak conn':>9} "
        f"{'errors':>6} {'killed':>6} {'lost':>4} {'left':>4} {'trials':>6}"
    )
    print(
        f"{result['workers']:>7} {result['via']:>6} {result['trials_per_minute']:>10.0f} "
        f"{result['transactions_per_second']:>9.0f} {result['peak_connections']:>9} "
        f"{result['errors']:>6} {result['killed']:>6} {result['lost']:>4} {result['left']:>4} "
        f"{result['trials']:>6}"
    )


if __name__ == "__main__":
    main()
