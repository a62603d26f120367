"""Creating, resuming and running studies."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import numpy as np
import optuna
import optuna_dashboard
import torch
from optuna.trial import TrialState

from batchlr.errors import BatchlrError, BatchlrUsageError, Interrupted
from batchlr.objectives.data import ImageData, load_dataset
from batchlr.objectives.device import resolve_device
from batchlr.objectives.duplicates import split_duplicates
from batchlr.objectives.folds import HOLDOUT, FoldAssignment, assign_folds
from batchlr.objectives.micro_batches import resolve_cap
from batchlr.objectives.models import resolve_model
from batchlr.objectives.objective import CrossValidationObjective
from batchlr.objectives.trial_record import TrialRecord
from batchlr.search.pruners import make_pruner
from batchlr.search.samplers import bounded_grid, make_sampler
from batchlr.search.space import SEED_LIMIT, Hyperparameters, default_momentum
from batchlr.studies import render
from batchlr.studies.probes import ProbeData, find_lr
from batchlr.studies.progress import Mode, StudyProgress
from batchlr.studies.retries import fail_orphaned_trials, queue_retry, this_worker
from batchlr.studies.spec import (
    StudySpec,
    check_names,
    load_spec,
    reconcile,
    save_micro_batch_cap,
    save_spec,
)
from batchlr.studies.storage import DEFAULT_HEARTBEAT, create_study_from, open_storage
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
    cache_dir: Path | None = None
    """Where decoded image folders are cached; ``None``: the user's cache home."""
    fuse_folds: str = "auto"
    """``--fuse-folds``: train a trial's folds as one fused model (auto: on CUDA)."""
    compile: bool = False
    """``--compile``: torch.compile the forward pass."""


@dataclasses.dataclass(frozen=True)
class OpenStudy:
    """A study ready to run trials in this process, with the objective built for it."""

    study: optuna.Study
    storage: optuna.storages.RDBStorage
    spec: StudySpec
    objective: CrossValidationObjective
    previous_trials: int
    creation_warning: str | None = None
    """Said by the process that created the study, e.g. that its folds split identical images."""

    def optimize(
        self,
        n_trials: int | None,
        timeout: float | None,
        callbacks: Sequence[TrialCallback] = (),
        max_trials: int | None = None,
        on_start: Callable[[optuna.Study], None] | None = None,
    ) -> None:
        """Run trials until ``n_trials`` have run here, ``timeout`` seconds have passed, or the
        study holds ``max_trials`` finished (complete or pruned) trials, counting every worker's,
        and no queued retry waits: retries run even once ``max_trials`` is reached.

        Each trial records its worker (user attr ``worker``, see :func:`this_worker`) before
        anything else, sampling included, and then calls ``on_start``. On KeyboardInterrupt
        the running trial ends FAIL with user attr ``reason`` = ``"interrupted"``, a copy
        with its params waits to run first when the study resumes (system attr
        ``failed_trial`` names it), and the interrupt propagates. Before the first trial,
        after each and after the last, trials left RUNNING by workers that died are failed
        and retried (see :func:`fail_orphaned_trials`).
        """
        fail_orphaned_trials(self.study, self.storage)
        stop = _StopAtMaxTrials(max_trials)
        if stop.reached(self.study):
            return

        def sweep(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            fail_orphaned_trials(study, self.storage)

        def run(trial: optuna.Trial) -> float | tuple[float, float]:
            return self._interruptible(trial, on_start)

        try:
            # The sweep first, so that the stop rule sees the retries it queues.
            self.study.optimize(
                run, n_trials=n_trials, timeout=timeout, callbacks=[sweep, *callbacks, stop]
            )
        finally:
            fail_orphaned_trials(self.study, self.storage)

    def opening(self, masked_storage: str, plan: TrialPlan) -> tuple[list[str], str | None]:
        """What ``batchlr run`` prints before the first trial (see :func:`render.opening`),
        with what each of ``plan.workers`` local workers runs."""
        objective = self.objective
        device = f"{objective.device} ({objective.execution.describe()})"
        lines, warning = render.opening(
            self.study.study_name,
            self.previous_trials,
            masked_storage,
            self.spec,
            objective.space,
            device,
        )
        if plan.workers > 1:
            lines.append(
                render.workers_line(
                    plan.workers, plan.trials_per_process, plan.timeout, plan.max_trials
                )
            )
        return lines, "\n".join(filter(None, (warning, self.creation_warning))) or None

    def _interruptible(
        self, trial: optuna.Trial, on_start: Callable[[optuna.Study], None] | None
    ) -> float | tuple[float, float]:
        # First of all: a worker killed at any later moment leaves a trial that the next
        # sweep ties to a dead pid, instead of one that waits for its heartbeat to go stale.
        TrialRecord(worker=this_worker(str(self.objective.device))).write(trial)
        try:
            if on_start:
                on_start(self.study)
            return self.objective(trial)
        except KeyboardInterrupt:
            # Queued for the next run of the study, as a dead worker's trial is.
            queue_retry(self.study, self.study.get_trials(deepcopy=False)[trial.number])
            TrialRecord(reason="interrupted").write(trial)
            raise
        except SystemExit as error:
            # Only a model's own code exits inside a trial; as an error, the trial ends FAIL
            # instead of RUNNING with no worker left to run it.
            raise BatchlrError(
                f"--model {self.spec.model}: its code called exit({error.code!r}) in trial "
                f"{trial.number}; a model must return or raise"
            ) from None


class _StopAtMaxTrials:
    """An ``optimize`` callback that stops the study once it holds ``max_trials`` finished
    trials and no retry waits (``None``: never)."""

    def __init__(self, max_trials: int | None) -> None:
        self.max_trials = max_trials

    def reached(self, study: optuna.Study) -> bool:
        if self.max_trials is None:
            return False
        trials = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.WAITING))
        finished = sum(trial.state in FINISHED for trial in trials)
        return finished >= self.max_trials and finished == len(trials)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if self.reached(study):
            study.stop()


@dataclasses.dataclass(frozen=True)
class TrialPlan:
    """How many trials a run starts, in how many local processes, and how it shows them."""

    n_trials: int | None = None
    """Trials each process runs (each worker's, with ``workers``); :data:`DEFAULT_N_TRIALS`
    when neither it nor ``timeout`` is set."""
    timeout: float | None = None
    max_trials: int | None = None
    workers: int = 1
    worker_arguments: tuple[str, ...] = ()
    """The ``batchlr run`` options each worker gets (see :func:`batchlr.studies.workers.worker_arguments`)."""
    progress: Mode = "lines"

    @property
    def trials_per_process(self) -> int | None:
        """The ``n_trials`` of each process's ``optimize``: None runs until the timeout."""
        return self.n_trials if self.n_trials or self.timeout else DEFAULT_N_TRIALS


def run_trials(opened: OpenStudy, plan: TrialPlan, options: RunOptions) -> None:
    """Run the plan's trials on the opened study, here or in ``plan.workers`` local processes.

    With workers, this process runs no trial: it shows the study's progress, reading the
    storage every :data:`batchlr.studies.workers.POLL_SECONDS`, while the workers run with none of their own.

    Raises:
        Interrupted: on Ctrl-C or SIGTERM, once the running trial is marked for a retry.
        WorkerFailed: with the first failing worker's error line and exit code.
    """
    n_trials = plan.trials_per_process
    if plan.workers > 1:
        # Each worker loads its own copy of the data; this process's would sit idle on the GPU.
        opened.objective.release()
        total = n_trials * plan.workers if n_trials else None
        with StudyProgress(plan.progress, total, rounds=None, folds=0) as progress:
            progress.follow(opened.study)
            run_workers(
                plan.worker_arguments,
                plan.workers,
                options.device,
                options.seed,
                lambda: progress.follow(opened.study),
            )
            progress.follow(opened.study)
        return
    interrupts = stop_gracefully_on_signals()
    objective = opened.objective
    try:
        with StudyProgress(
            plan.progress, n_trials, objective.settings.budget.round_count, objective.folds.k
        ) as progress:

            def on_start(study: optuna.Study) -> None:
                interrupts.check()
                progress.on_start(study)

            def on_round(rounds_done: int) -> None:
                interrupts.check()
                progress.on_round(rounds_done)

            objective.on_round = on_round
            objective.computing = interrupts.computing
            opened.optimize(n_trials, plan.timeout, [progress.on_trial], plan.max_trials, on_start)
            interrupts.check()  # a signal after the last trial began still ends the run as interrupted
    except KeyboardInterrupt:
        raise Interrupted(
            "interrupted: the running trial is marked FAIL (reason interrupted); run the same "
            "command to resume, retrying it first"
        ) from None


def open_study(
    storage_url: str,
    study_name: str | None,
    requested: StudySpec,
    given: Collection[str],
    options: RunOptions,
) -> OpenStudy:
    """Create the study, or resume the one of that name, and build its objective.

    ``given`` names the settings of ``requested`` the user chose explicitly; a resumed study
    keeps its stored settings and rejects explicit ones that differ (see :func:`reconcile`).
    A new study is written only once the data, folds, model and device are known to work,
    and whole (see :func:`create_study_from`). When several workers start a new study at
    once, the database lets one create it and the others resume it.
    """
    requested = dataclasses.replace(
        requested, dataset=check_names(requested.dataset, requested.model)
    )
    storage = open_storage(storage_url, access="create", heartbeat=options.heartbeat)
    name = study_name or requested.default_study_name()
    while True:
        stored = load_spec(storage, name)
        spec, objective = prepare(name, stored, requested, given, options)
        if stored or _create_study(storage, name, spec, objective, options.command_line):
            break
    previous_trials = (
        len(storage.get_all_trials(storage.get_study_id_from_name(name))) if stored else 0
    )
    study = optuna.load_study(
        storage=storage,
        study_name=name,
        sampler=make_sampler(
            spec.sampler,
            objective.space,
            sampler_seed(options.seed, previous_trials),
            spec.grid_points,
        ),
        pruner=make_pruner(spec.pruner, objective.settings.budget.round_count),
    )
    cap = spec.training.max_micro_batch
    if stored and isinstance(cap, int) and stored[0].training.max_micro_batch is None:
        save_micro_batch_cap(study, cap)
    # Only the process that created the study says it: the folds are fixed from now on.
    duplicates = (
        None
        if stored
        else render.split_duplicates_warning(
            split_duplicates(objective.data.images, objective.folds.fold_of), objective.data.sources
        )
    )
    return OpenStudy(study, storage, spec, objective, previous_trials, duplicates)


def sampler_seed(seed: int, previous_trials: int) -> int:
    """The seed of a run's sampler: ``seed`` for a new study; for a resumed one, a seed drawn
    from ``seed`` and the trials so far, so that the run repeats none of the earlier runs'
    proposals, and that two runs with different seeds never share one (as ``seed +
    previous_trials`` would: seed 1 with 0 trials so far and seed 0 with 1, say, two workers
    of ``--workers``)."""
    if not previous_trials:
        return seed
    return int(np.random.SeedSequence([seed, previous_trials]).generate_state(1)[0]) % SEED_LIMIT


def prepare(
    name: str,
    stored: tuple[StudySpec, FoldAssignment, str] | None,
    requested: StudySpec,
    given: Collection[str],
    options: RunOptions,
) -> tuple[StudySpec, CrossValidationObjective]:
    """The spec and objective for the stored study, or for a new one from ``requested``.

    The spec comes back as the run uses it: the data directory absolute, the micro-batch cap
    resolved, and for a new study under ``--lr auto`` the lr range found.
    """
    spec = reconcile(stored[0] if stored else None, requested, given, name)
    if "grid_points" in given and spec.grid_points and spec.sampler != "grid":
        raise BatchlrUsageError(f"--grid-points goes with --sampler grid, not {spec.sampler}")
    if spec.sampler == "grid":
        bounded_grid(spec.space, spec.grid_points)  # before anything loads or is stored
    spec = dataclasses.replace(spec, data_dir=spec.data_dir.expanduser().resolve())
    device = resolve_device(options.device)
    data = load_dataset(spec.dataset, spec.data_dir, spec.image_size, options.cache_dir, device)
    if stored:
        folds = _checked_folds(stored[1], stored[2], data, name)
    else:
        folds = assign_folds(
            data.labels.numpy(),
            spec.folds,
            spec.seed,
            holdout=data.test_images is None,
            classes=data.classes,
        )
    if options.lr_auto and not stored:
        spec = _with_found_lr(spec, data, folds, device, options.seed)
    space = spec.space.clip_batch_size(folds.smallest_train_size())
    stored_cap = stored[0].training.max_micro_batch if stored else None
    cap = resolve_cap(
        spec.training.max_micro_batch,
        stored_cap,
        resolve_model(spec.model),
        data.input_shape,
        data.num_classes,
        device,
        space.batch_size[1],
    )
    spec = dataclasses.replace(
        spec, training=dataclasses.replace(spec.training, max_micro_batch=cap)
    )
    return spec, CrossValidationObjective(
        data,
        folds,
        space,
        spec.model,
        spec.training,
        device,
        options.seed,
        options.fuse_folds,
        options.compile,
    )


def _create_study(
    storage: optuna.storages.RDBStorage,
    name: str,
    spec: StudySpec,
    objective: CrossValidationObjective,
    command_line: str,
) -> bool:
    """Create the study with its spec, folds, metric names and note, all at once; False when
    another process created one of that name first."""
    draft = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=draft, study_name=name, directions=spec.directions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(spec.metric_names)
    optuna_dashboard.save_note(study, render.dashboard_note(spec, objective, command_line))
    save_spec(draft, name, spec, objective.folds, objective.data.labels_fingerprint())
    return create_study_from(storage, draft, name)


def _with_found_lr(
    spec: StudySpec, data: ImageData, folds: FoldAssignment, device: torch.device, seed: int
) -> StudySpec:
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
    hyperparameters = Hyperparameters(
        batch_size=batch_size, lr=0.0, optimizer=optimizer, momentum=momentum
    )
    probe = ProbeData.on(data, np.flatnonzero(folds.fold_of != HOLDOUT), device)
    test = find_lr(probe, spec.model, hyperparameters, seed)
    suggested = test.suggested_lr
    record = {
        "suggested_lr": suggested,
        "loss_drop": test.loss_drop,
        "batch_size": batch_size,
        "optimizer": optimizer,
        "momentum": momentum,
    }
    # The test found an lr for its batch size; under a scaling rule the range is of base_lr.
    center = suggested / space.lr_scaling.lr(1.0, batch_size)
    return dataclasses.replace(
        spec, space=dataclasses.replace(spec.space, lr=(center / 10, center * 10)), lr_find=record
    )


def _checked_folds(
    folds: FoldAssignment, fingerprint: str, data: ImageData, study: str
) -> FoldAssignment:
    """The stored folds, once the data set is known to be the one they were drawn on."""
    if len(folds.fold_of) != len(data.labels) or fingerprint != data.labels_fingerprint():
        raise BatchlrError(
            f"study {study!r} was created on different {data.name} data ({len(folds.fold_of)} samples, "
            f"now {len(data.labels)}); point --data-dir at the original data or choose a new --study name"
        )
    return folds
