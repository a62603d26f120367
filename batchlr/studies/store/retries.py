"""Retrying trials that did not end on their own: interrupted ones and those of workers that died."""

from __future__ import annotations

import os
import socket
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from batchlr.objectives.trial_record import TrialRecord
from batchlr.studies.store.liveness import ALIVE_ATTR, judged_interval

if TYPE_CHECKING:
    from batchlr.studies.store.storage import LiveStorage

# A dead worker's trial is retried, and so is that retry; a trial that keeps killing its
# worker (the host's out-of-memory killer, say) then stops being retried.
STALE_RETRIES = 2


def queue_retry(study: optuna.Study, trial: FrozenTrial, limit: int | None = None) -> None:
    """Queue a WAITING trial with ``trial``'s params, which runs before any new one.

    The retry carries none of ``trial``'s user attrs (no stale ``reason`` or ``worker``); its
    system attrs ``failed_trial`` and ``retry_history`` name the first trial of the series and
    every trial in it, as Optuna's ``RetryHeartbeatStaleTrialCallback`` does. A trial is
    queued at most once, however many paths (a second Ctrl-C, a stale heartbeat, a dead
    worker's pid) report it; ``limit`` caps the length of the series.
    """
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if limit is not None and len(history) > limit:
        return
    if any(
        other.system_attrs.get("retry_history", [None])[-1] == trial.number
        for other in study.get_trials(deepcopy=False)
    ):
        return
    study.add_trial(
        optuna.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            system_attrs={"failed_trial": history[0], "retry_history": history},
        )
    )


def retry_stale_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """The storage's callback for a trial whose heartbeat went stale (see :func:`queue_retry`)."""
    queue_retry(study, trial, limit=STALE_RETRIES)


def _pid_space() -> str | None:
    """The kernel boot and pid namespace this process's pid is numbered in (Linux), or None:
    containers that share a host name (Docker's ``--network host``, Kubernetes'
    ``hostNetwork``) each number their own processes, and a pid from another is no process here."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{boot}/{namespace}"


PID_SPACE = _pid_space()


def this_worker(device: str) -> dict[str, object]:
    """The user attr ``worker`` of a trial this process runs: the host, pid and pid space that
    :func:`fail_orphaned_trials` checks, and the device."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_space": PID_SPACE,
        "device": device,
    }


def fail_orphaned_trials(study: optuna.Study, storage: LiveStorage) -> None:
    """Fail and retry every RUNNING trial whose worker is gone.

    A trial of a process of this host that no longer runs (its user attr ``worker``, see
    :func:`this_worker`, names it) is failed at once; others (of other hosts, or of
    processes that may live) are failed once their heartbeat is stale. Trials of live
    workers keep their heartbeats and are left alone.
    """
    if not storage.get_heartbeat_interval():
        return
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _worker_is_dead(trial):
            try:
                for key, value in TrialRecord(reason="worker lost").to_attrs().items():
                    storage.set_trial_user_attr(trial._trial_id, key, value)
                storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
            except UpdateFinishedTrialError:
                continue  # another process failed it first, and queued its retry
            retry_stale_trial(study, storage.get_trial(trial._trial_id))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        fail_stale_trials(study)


def watch_unknown_workers(
    study: optuna.Study, storage: LiveStorage, check: Callable[[], None] = lambda: None
) -> None:
    """Watch the RUNNING trials that no live process of this host runs until each has
    refreshed its liveness stamp, ended, or been failed as stale and retried: at most two
    heartbeat intervals (the longer of this process's and the trial's worker's), by this
    process's clock (see :mod:`batchlr.studies.store.liveness`).

    For a run's end, so that a rerun after workers died leaves none of their trials RUNNING,
    where the dead worker was on another host or died before it recorded its pid. Calls
    ``check`` between looks, so that an interrupt need not wait the watch out.
    """
    interval = storage.get_heartbeat_interval()
    if not interval:
        return
    watched = {
        trial._trial_id: trial.system_attrs.get(ALIVE_ATTR)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not _worker_is_alive_here(trial)
    }
    longest = max((judged_interval(stamp, interval) for stamp in watched.values()), default=0)
    deadline = time.monotonic() + 2 * longest + 1
    while watched and time.monotonic() < deadline:
        check()
        time.sleep(min(1.0, interval / 4))
        fail_orphaned_trials(study, storage)
        running = {
            trial._trial_id: trial
            for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        }
        watched = {
            trial_id: stamp
            for trial_id, stamp in watched.items()
            if trial_id in running and running[trial_id].system_attrs.get(ALIVE_ATTR) == stamp
        }


def run_left_retries(
    study: optuna.Study,
    storage: LiveStorage,
    objective: Callable[[optuna.Trial], Any],
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
    check: Callable[[], None] = lambda: None,
) -> None:
    """A run's last step: watch the trials of workers it cannot see (see
    :func:`watch_unknown_workers`), then run the retries that wait, one at a time: another
    worker may take a retry first, and this one then runs a new trial in its place, never
    more than one."""
    watch_unknown_workers(study, storage, check)
    while study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        study.optimize(objective, n_trials=1, callbacks=list(callbacks))


def _worker_is_alive_here(trial: FrozenTrial) -> bool:
    """Whether ``trial``'s worker is a process of this host that still runs."""
    return _numbered_here(TrialRecord.from_trial(trial).worker or {}) and not _worker_is_dead(trial)


def _numbered_here(worker: dict[str, Any]) -> bool:
    """Whether ``worker``'s pid names a process of this host and pid space (where both record
    one: a worker of an earlier release recorded only its host)."""
    recorded = worker.get("pid_space")
    return worker.get("host") == socket.gethostname() and recorded in (None, PID_SPACE)


def _worker_is_dead(trial: FrozenTrial) -> bool:
    """Whether ``trial``'s worker was another process of this host, which no longer runs."""
    worker = TrialRecord.from_trial(trial).worker or {}
    if not _numbered_here(worker) or worker.get("pid") == os.getpid():
        return False
    try:
        os.kill(int(worker["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError, TypeError, OverflowError):
        return False
    return False
