"""Creating, resuming and running studies."""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import optuna_dashboard
import torch
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.study import MaxTrialsCallback, StudyDirection
from optuna.trial import TrialState

from batchlr.errors import BatchlrError
from batchlr.objectives.data import ImageData, load_dataset
from batchlr.objectives.device import resolve_device
from batchlr.objectives.folds import HOLDOUT, FoldAssignment, assign_folds
from batchlr.objectives.memory import largest_micro_batch
from batchlr.objectives.models import resolve_model
from batchlr.objectives.objective import CrossValidationObjective, TrainingSettings
from batchlr.search.pruners import make_pruner
from batchlr.search.samplers import make_sampler
from batchlr.search.space import Hyperparameters, SearchSpace, default_momentum
from batchlr.studies.probes import ProbeData, find_lr, weak_descent_warning
from batchlr.studies.spec import METRIC_NAMES, StudySpec, load_spec, reconcile, save_spec
from batchlr.studies.storage import DEFAULT_HEARTBEAT, open_storage
from batchlr.studies.summary import describe_training

MICRO_BATCH_ATTR = "max_micro_batch"
LR_FIND_ATTR = "lr_find"

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

TrialCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How this process runs trials; none of it is part of the study's definition."""

    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 0
    device: str = "auto"
    data_dir: Path = Path("data")
    max_micro_batch: int | str | None = None
    """A cap on the samples per forward/backward pass, ``"auto"`` to probe the device, or ``None``."""
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
        """What ``batchlr run`` prints before the first trial, and a warning about a weak
        ``--lr auto`` range test, or None."""
        spec, space = self.spec, self.objective.space
        state = f"resuming, {self.previous_trials} trials so far" if self.previous_trials else "new"
        lines = [
            f"study {self.study.study_name} ({state}) in {masked_storage}",
            f"  {spec.dataset}, {spec.model}, {spec.folds} folds x {describe_training(spec.settings())} on {self.objective.device}; "
            f"batch_size {space.batch_size[0]}:{space.batch_size[1]}, {space.lr_param} {spec.space.lr[0]:.3g}:{spec.space.lr[1]:.3g}, "
            f"{','.join(spec.space.optimizers)}",
        ]
        found = self.study.user_attrs.get(LR_FIND_ATTR)
        if not found:
            return lines, None
        lines.append(f"  --lr auto: LR range test at batch {found['batch_size']} with {found['optimizer']} suggested {found['suggested_lr']:.3g}")
        return lines, weak_descent_warning(found.get("loss_drop", 1.0), "the lr range may be off; consider giving --lr MIN:MAX")

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
    storage = open_storage(storage_url, create=True, heartbeat=options.heartbeat)
    name = study_name or requested.default_study_name()
    while True:
        stored = load_spec(storage, name)
        prepared = prepare(storage, name, stored, requested, given, options)
        if stored or _create_study(storage, name, prepared.spec.directions()):
            break
    spec, objective = prepared.spec, prepared.objective
    previous_trials = len(storage.get_all_trials(storage.get_study_id_from_name(name))) if stored else 0
    study = optuna.load_study(
        storage=storage,
        study_name=name,
        # Offsetting the seed by the trials already run keeps a resumed run from repeating them.
        sampler=make_sampler(options.sampler, objective.space, options.seed + previous_trials),
        pruner=make_pruner(options.pruner, objective.settings.budget.round_count),
    )
    if not stored:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([METRIC_NAMES[objective_name] for objective_name in spec.objectives])
            if prepared.lr_found:
                study.set_user_attr(LR_FIND_ATTR, prepared.lr_found)
            if objective.settings.max_micro_batch is not None:
                study.set_user_attr(MICRO_BATCH_ATTR, objective.settings.max_micro_batch)
            # How the study was run, for `show --as-config`; a later run may change them.
            for key, value in (("sampler", options.sampler), ("pruner", options.pruner), ("data_dir", str(options.data_dir.expanduser().resolve()))):
                study.set_user_attr(key, value)
            optuna_dashboard.save_note(study, _note(spec, objective, options.command_line))
            save_spec(storage, name, spec, objective.folds, objective.data.labels_fingerprint())
        except BaseException:
            # A study without its spec would make every later run wait and fail: take it away.
            storage.delete_study(storage.get_study_id_from_name(name))
            raise
    elif objective.settings.max_micro_batch is not None and MICRO_BATCH_ATTR not in study.user_attrs:
        study.set_user_attr(MICRO_BATCH_ATTR, objective.settings.max_micro_batch)
    return OpenStudy(study, storage, spec, objective, previous_trials)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A study's spec and the objective built for it in this process."""

    spec: StudySpec
    objective: CrossValidationObjective
    lr_found: dict[str, Any] | None


def prepare(
    storage: optuna.storages.RDBStorage,
    name: str,
    stored: tuple[StudySpec, FoldAssignment, str] | None,
    requested: StudySpec,
    given: Collection[str],
    options: RunOptions,
) -> Prepared:
    """The spec and objective for the stored study, or for a new one from ``requested``."""
    stored_attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(name)) if stored else {}
    spec = reconcile(stored[0] if stored else None, requested, given, name)
    data = load_dataset(spec.dataset, options.data_dir.expanduser())
    if stored:
        folds = _checked_folds(stored[1], stored[2], data, name)
    else:
        folds = assign_folds(data.labels.numpy(), spec.folds, spec.seed, holdout=data.test_images is None)
    device = resolve_device(options.device)
    lr_found = None
    if options.lr_auto and not stored:
        spec, lr_found = _with_found_lr(spec, data, folds, device, options.seed)
    space = spec.space.clip_batch_size(folds.smallest_train_size())
    settings = TrainingSettings(
        budget=spec.training_budget(),
        schedule=spec.schedule,
        warmup_epochs=spec.warmup,
        max_micro_batch=_micro_batch_cap(options.max_micro_batch, stored_attrs, spec, data, device, space),
        objectives=spec.objectives,
    )
    objective = CrossValidationObjective(data, folds, space, spec.model, settings, device, options.seed)
    return Prepared(spec, objective, lr_found)


def _create_study(storage: optuna.storages.RDBStorage, name: str, directions: list[str]) -> bool:
    """Create the study; False when another process created one of that name first."""
    try:
        storage.create_new_study([StudyDirection[direction.upper()] for direction in directions], name)
    except optuna.exceptions.DuplicatedStudyError:
        return False
    return True


def _note(spec: StudySpec, objective: CrossValidationObjective, command_line: str) -> str:
    """The study's note in optuna-dashboard (markdown): what it searches, on what, and how it was started."""
    data, space = objective.data, objective.space
    settings = {key: value for key, value in spec.settings().items() if value is not None}
    rows = "\n".join(f"| {key} | `{value}` |" for key, value in settings.items())
    return (
        f"# batchlr study\n\n{data.name}: {len(data.labels)} training images of shape {data.input_shape}, "
        f"{data.num_classes} classes; {spec.folds}-fold cross-validation, "
        f"{'official test split' if data.test_images is not None else '20 % hold-out'} kept out.\n\n"
        f"Searches `batch_size` {space.batch_size[0]}..{space.batch_size[1]}, `{space.lr_param}` "
        f"{space.lr[0]:.3g}..{space.lr[1]:.3g} (log scale) and `optimizer` in {', '.join(space.optimizers)}.\n\n"
        f"| setting | value |\n| --- | --- |\n{rows}\n\nStarted with:\n\n```\n{command_line or 'the Python API'}\n```\n"
    )


def _with_found_lr(
    spec: StudySpec, data: ImageData, folds: FoldAssignment, device: torch.device, seed: int
) -> tuple[StudySpec, dict[str, Any]]:
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
    return dataclasses.replace(spec, space=dataclasses.replace(spec.space, lr=(center / 10, center * 10))), record


def _micro_batch_cap(
    requested: int | str | None,
    stored_attrs: dict[str, Any],
    spec: StudySpec,
    data: ImageData,
    device: torch.device,
    space: SearchSpace,
) -> int | None:
    """The micro-batch cap: a number as given; for ``auto`` or nothing, the one stored on the
    study (so that resumed runs and refits train as the study's trials did); else for ``auto``
    the one probed once."""
    if requested not in ("auto", None):
        return int(requested)
    if MICRO_BATCH_ATTR in stored_attrs:
        return int(stored_attrs[MICRO_BATCH_ATTR])
    if requested is None:
        return None
    factory = resolve_model(spec.model)
    return largest_micro_batch(factory, data.input_shape, data.num_classes, device, space.batch_size[1])


def _checked_folds(folds: FoldAssignment, fingerprint: str, data: ImageData, study: str) -> FoldAssignment:
    """The stored folds, once the data set is known to be the one they were drawn on."""
    if len(folds.fold_of) != len(data.labels) or fingerprint != data.labels_fingerprint():
        raise BatchlrError(
            f"study {study!r} was created on different {data.name} data ({len(folds.fold_of)} samples, "
            f"now {len(data.labels)}); point --data-dir at the original data or choose a new --study name"
        )
    return folds
