"""Creating, resuming and running studies."""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Collection, Sequence

import numpy as np
import optuna
import optuna_dashboard
import torch
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.study import MaxTrialsCallback, StudyDirection
from optuna.trial import TrialState

from batchlr.errors import BatchlrError, Interrupted
from batchlr.objectives.data import ImageData, load_dataset
from batchlr.objectives.device import resolve_device
from batchlr.objectives.folds import HOLDOUT, FoldAssignment, assign_folds
from batchlr.objectives.micro_batches import resolve_cap
from batchlr.objectives.models import resolve_model
from batchlr.objectives.objective import CrossValidationObjective
from batchlr.search.pruners import make_pruner
from batchlr.search.samplers import make_sampler
from batchlr.search.space import Hyperparameters, default_momentum
from batchlr.studies import render
from batchlr.studies.probes import ProbeData, find_lr
from batchlr.studies.progress import Mode, StudyProgress
from batchlr.studies.spec import StudySpec, check_names, load_spec, reconcile, save_micro_batch_cap, save_spec
from batchlr.studies.storage import DEFAULT_HEARTBEAT, open_storage
from batchlr.studies.workers import run_workers, stop_gracefully_on_signals

DEFAULT_N_TRIALS = 20

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

TrialCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How this process runs trials; none of it is part of the study's definition."""

    seed: int = 0
    """Seeds this run's sampler and model initialisation (and a new study's folds, as ``StudySpec.seed``)."""
    device: str = "auto"
    lr_auto: bool = False
    """For a new study, run the LR range test and search one decade either side of its suggestion."""
    heartbeat: int | None = DEFAULT_HEARTBEAT
    """Seconds between a running trial's heartbeats; ``None`` turns heartbeats off."""
    command_line: str = ""
    """The command that started the run (passwords masked), for the study's dashboard note."""


@dataclasses.dataclass(frozen=True)
class OpenStudy:
    """A study ready to run trials in this process, with the objective built for it."""

    study: optuna.Study
    storage: optuna.storages.RDBStorage
    spec: StudySpec
    objective: CrossValidationObjective
    previous_trials: int

    def optimize(
        self,
        n_trials: int | None,
        timeout: float | None,
        callbacks: Sequence[TrialCallback] = (),
        max_trials: int | None = None,
    ) -> None:
        """Run trials until ``n_trials`` have run here, ``timeout`` seconds have passed, or the
        study holds ``max_trials`` finished (complete or pruned) trials, counting every worker's.

        On KeyboardInterrupt the running trial ends FAIL with user attr ``reason`` =
        ``"interrupted"``, a copy with its params waits to run first when the study resumes
        (system attr ``failed_trial`` names it), and the interrupt propagates. Before returning, trials left RUNNING
        by local workers that died are failed (and so retried) once their heartbeat is stale.
        """
        callbacks = list(callbacks)
        if max_trials is not None:
            if len(self.study.get_trials(deepcopy=False, states=FINISHED)) >= max_trials:
                return
            callbacks.append(MaxTrialsCallback(max_trials, states=FINISHED))
        try:
            self.study.optimize(self._interruptible, n_trials=n_trials, timeout=timeout, callbacks=callbacks)
        finally:
            fail_orphaned_trials(self.study, self.storage)

    def opening(self, masked_storage: str) -> tuple[list[str], str | None]:
        """What ``batchlr run`` prints before the first trial (see :func:`render.opening`)."""
        objective = self.objective
        return render.opening(self.study.study_name, self.previous_trials, masked_storage, self.spec, objective.space, str(objective.device))

    def _interruptible(self, trial: optuna.Trial) -> float | tuple[float, float]:
        try:
            return self.objective(trial)
        except KeyboardInterrupt:
            # Queued for the next run of the study, as a dead worker's trial is; retried before
            # the reason is set, since the retry inherits the trial's user attrs.
            interrupted = self.study.get_trials(deepcopy=False)[trial.number]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                RetryHeartbeatStaleTrialCallback(max_retry=1)(self.study, interrupted)
            trial.set_user_attr("reason", "interrupted")
            raise


@dataclasses.dataclass(frozen=True)
class TrialPlan:
    """How many trials a run starts, in how many local processes, and how it shows them."""

    n_trials: int | None = None
    """Trials this process runs; :data:`DEFAULT_N_TRIALS` when neither it nor ``timeout`` is set."""
    timeout: float | None = None
    max_trials: int | None = None
    workers: int = 1
    worker_arguments: tuple[str, ...] = ()
    """The ``batchlr run`` options each worker gets (see :func:`batchlr.studies.workers.worker_arguments`)."""
    progress: Mode = "lines"


def run_trials(opened: OpenStudy, plan: TrialPlan, options: RunOptions) -> None:
    """Run the plan's trials on the opened study, here or in ``plan.workers`` local processes.

    Raises:
        Interrupted: on Ctrl-C or SIGTERM, once the running trial is marked for a retry.
        SystemExit: with the first failing worker's exit code.
    """
    if plan.workers > 1:
        # Each worker loads its own copy of the data; this process's would sit idle on the GPU.
        opened.objective.release()
        code = run_workers(plan.worker_arguments, plan.workers, options.device, options.seed)
        if code:
            raise SystemExit(code)
        return
    stop_gracefully_on_signals()
    n_trials = plan.n_trials if plan.n_trials or plan.timeout else DEFAULT_N_TRIALS
    objective = opened.objective
    try:
        with StudyProgress(plan.progress, n_trials, objective.settings.budget.round_count, objective.folds.k) as progress:
            objective.on_round = progress.on_round
            opened.optimize(n_trials, plan.timeout, [progress.on_trial], plan.max_trials)
    except KeyboardInterrupt:
        raise Interrupted(
            "interrupted: the running trial is marked FAIL (reason interrupted); run the same command to resume, retrying it first"
        ) from None


def fail_orphaned_trials(study: optuna.Study, storage: optuna.storages.RDBStorage) -> None:
    """Fail every stale RUNNING trial, waiting for the heartbeats of dead local workers' trials to go stale.

    Optuna fails stale trials of any host; the wait is only for this host's dead workers, whose
    pids can be checked. Trials of live workers keep their heartbeats and are left alone.
    """
    interval = storage.get_heartbeat_interval()
    if not interval:
        return
    deadline = time.monotonic() + 2 * interval + 1  # Optuna's default grace period is twice the interval
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            fail_stale_trials(study)
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not any(_orphaned(trial) for trial in running) or time.monotonic() > deadline:
            return
        time.sleep(min(interval, 1))


def _orphaned(trial: optuna.trial.FrozenTrial) -> bool:
    worker = trial.user_attrs.get("worker") or {}
    if worker.get("host") != socket.gethostname() or worker.get("pid") == os.getpid():
        return False
    try:
        os.kill(int(worker["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError):
        return False
    return False


def open_study(
    storage_url: str, study_name: str | None, requested: StudySpec, given: Collection[str], options: RunOptions
) -> OpenStudy:
    """Create the study, or resume the one of that name, and build its objective.

    ``given`` names the settings of ``requested`` the user chose explicitly; a resumed study
    keeps its stored settings and rejects explicit ones that differ (see :func:`reconcile`).
    A new study is written only once the data, folds, model and device are known to work.
    When several workers start a new study at once, the database lets one create it; the
    others wait for its settings and folds and resume it.
    """
    requested = dataclasses.replace(requested, dataset=check_names(requested.dataset, requested.model))
    storage = open_storage(storage_url, create=True, heartbeat=options.heartbeat)
    name = study_name or requested.default_study_name()
    while True:
        stored = load_spec(storage, name)
        spec, objective = prepare(name, stored, requested, given, options)
        if stored or _create_study(storage, name, spec.directions):
            break
    previous_trials = len(storage.get_all_trials(storage.get_study_id_from_name(name))) if stored else 0
    study = optuna.load_study(
        storage=storage,
        study_name=name,
        # Offsetting the seed by the trials already run keeps a resumed run from repeating them.
        sampler=make_sampler(spec.sampler, objective.space, options.seed + previous_trials),
        pruner=make_pruner(spec.pruner, objective.settings.budget.round_count),
    )
    cap = spec.training.max_micro_batch
    if not stored:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(spec.metric_names)
            optuna_dashboard.save_note(study, render.dashboard_note(spec, objective, options.command_line))
            save_spec(storage, name, spec, objective.folds, objective.data.labels_fingerprint())
        except BaseException:
            # A study without its spec would make every later run wait and fail: take it away.
            storage.delete_study(storage.get_study_id_from_name(name))
            raise
    elif isinstance(cap, int) and stored[0].training.max_micro_batch is None:
        save_micro_batch_cap(study, cap)
    return OpenStudy(study, storage, spec, objective, previous_trials)


def prepare(
    name: str, stored: tuple[StudySpec, FoldAssignment, str] | None, requested: StudySpec, given: Collection[str], options: RunOptions
) -> tuple[StudySpec, CrossValidationObjective]:
    """The spec and objective for the stored study, or for a new one from ``requested``.

    The spec comes back as the run uses it: the data directory absolute, the micro-batch cap
    resolved, and for a new study under ``--lr auto`` the lr range found.
    """
    spec = reconcile(stored[0] if stored else None, requested, given, name)
    spec = dataclasses.replace(spec, data_dir=spec.data_dir.expanduser().resolve())
    data = load_dataset(spec.dataset, spec.data_dir)
    if stored:
        folds = _checked_folds(stored[1], stored[2], data, name)
    else:
        folds = assign_folds(data.labels.numpy(), spec.folds, spec.seed, holdout=data.test_images is None)
    device = resolve_device(options.device)
    if options.lr_auto and not stored:
        spec = _with_found_lr(spec, data, folds, device, options.seed)
    space = spec.space.clip_batch_size(folds.smallest_train_size())
    stored_cap = stored[0].training.max_micro_batch if stored else None
    cap = resolve_cap(spec.training.max_micro_batch, stored_cap, resolve_model(spec.model), data.input_shape, data.num_classes, device, space.batch_size[1])
    spec = dataclasses.replace(spec, training=dataclasses.replace(spec.training, max_micro_batch=cap))
    return spec, CrossValidationObjective(data, folds, space, spec.model, spec.training, device, options.seed)


def _create_study(storage: optuna.storages.RDBStorage, name: str, directions: list[str]) -> bool:
    """Create the study; False when another process created one of that name first."""
    try:
        storage.create_new_study([StudyDirection[direction.upper()] for direction in directions], name)
    except optuna.exceptions.DuplicatedStudyError:
        return False
    return True


def _with_found_lr(spec: StudySpec, data: ImageData, folds: FoldAssignment, device: torch.device, seed: int) -> StudySpec:
    """``spec`` searching lr (or base_lr) one decade either side of the LR range test's suggestion.

    The test runs at the reference batch size under an LR scaling rule, so that the
    suggestion is a base_lr, and else at the geometric middle of the batch range, with the
    first optimizer of the search space.
    """
    space = spec.space.clip_batch_size(folds.smallest_train_size())
    if space.lr_scaling.rule != "none":
        batch_size = min(space.lr_scaling.reference_batch_size, space.batch_size[1])
    else:
        batch_size = round(math.sqrt(space.batch_size[0] * space.batch_size[1]))
    optimizer = space.optimizers[0]
    momentum = default_momentum(optimizer)
    hyperparameters = Hyperparameters(batch_size=batch_size, lr=0.0, optimizer=optimizer, momentum=momentum)
    probe = ProbeData.on(data, np.flatnonzero(folds.fold_of != HOLDOUT), device)
    test = find_lr(probe, spec.model, hyperparameters, seed)
    suggested = test.suggested_lr
    record = {"suggested_lr": suggested, "loss_drop": test.loss_drop, "batch_size": batch_size, "optimizer": optimizer, "momentum": momentum}
    # The test found an lr for its batch size; under a scaling rule the range is of base_lr.
    center = suggested / space.lr_scaling.lr(1.0, batch_size)
    return dataclasses.replace(spec, space=dataclasses.replace(spec.space, lr=(center / 10, center * 10)), lr_find=record)


def _checked_folds(folds: FoldAssignment, fingerprint: str, data: ImageData, study: str) -> FoldAssignment:
    """The stored folds, once the data set is known to be the one they were drawn on."""
    if len(folds.fold_of) != len(data.labels) or fingerprint != data.labels_fingerprint():
        raise BatchlrError(
            f"study {study!r} was created on different {data.name} data ({len(folds.fold_of)} samples, "
            f"now {len(data.labels)}); point --data-dir at the original data or choose a new --study name"
        )
    return folds
