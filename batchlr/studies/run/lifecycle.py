"""Opening a study (creating it or resuming it) and running trials on it, here or in local
worker processes.

How a study's spec and objective are built, and how a new study is written whole, is in
:mod:`batchlr.studies.run.creation`, which ``batchlr refit`` uses without running trials.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence

import numpy as np
import optuna
from optuna.trial import TrialState

from batchlr.errors import BatchlrError, Interrupted
from batchlr.objectives.objective import CrossValidationObjective
from batchlr.objectives.trial_record import TrialRecord
from batchlr.search.pruners import make_pruner
from batchlr.search.samplers import make_sampler
from batchlr.search.space import SEED_LIMIT
from batchlr.studies import render
from batchlr.studies.run.creation import RunOptions, create_study, duplicates_warning, prepare
from batchlr.studies.run.progress import Mode, StudyProgress
from batchlr.studies.run.stopping import StopWhenDone, stop_if_done
from batchlr.studies.run.workers import run_workers, stop_gracefully_on_signals
from batchlr.studies.store.data_facts import Stop
from batchlr.studies.store.retries import (
    fail_orphaned_trials,
    queue_retry,
    run_left_retries,
    this_worker,
)
from batchlr.studies.store.spec import StudySpec, check_names
from batchlr.studies.store.storage import (
    LiveStorage,
    check_sqlite_creatable,
    close_idle_connections,
    open_storage,
    sqlite_path,
)
from batchlr.studies.store.stored_spec import (
    LABELS_ATTR,
    UnfinishedStudy,
    load_spec,
    save_micro_batch_cap,
)
from batchlr.studies.store.study_creation import settle_unfinished
from batchlr.studies.store.summary import FINISHED

DEFAULT_N_TRIALS = 20

TrialCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


@dataclasses.dataclass(frozen=True)
class OpenStudy:
    """A study ready to run trials in this process, with the objective built for it."""

    study: optuna.Study
    storage: LiveStorage
    spec: StudySpec
    objective: CrossValidationObjective
    previous_trials: int
    creation_warning: str | None = None
    """Said by the process that created the study, e.g. that its folds split identical images."""
    stored_spec: StudySpec | None = None
    """The spec the study was created with, where this run resumes it."""

    def optimize(
        self,
        n_trials: int | None,
        timeout: float | None,
        callbacks: Sequence[TrialCallback] = (),
        max_trials: int | None = None,
        on_start: Callable[[optuna.Study], None] | None = None,
        check: Callable[[], None] = lambda: None,
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
        and retried (see :func:`fail_orphaned_trials`); at the end, trials of workers it cannot
        see are watched for up to two heartbeat intervals (see :func:`run_left_retries`),
        calling ``check`` (which raises on a pending interrupt) as it waits, and the retries
        this queues are run; a run with a ``timeout`` starts none of that past it.
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
            if timeout is not None:
                return  # past it no trial starts: what waits is the next run's
            run_left_retries(self.study, self.storage, run, [sweep, *callbacks], check)
        finally:
            fail_orphaned_trials(self.study, self.storage)

    def opening(self, masked_storage: str, plan: TrialPlan) -> tuple[list[str], str | None]:
        """What ``batchlr run`` prints before the first trial (see :func:`render.opening`),
        with what each of ``plan.workers`` local workers runs."""
        objective = self.objective
        device = f"{objective.trainer.device} ({objective.trainer.execution.describe()})"
        lines, warning = render.opening(
            self.study.study_name,
            self.previous_trials,
            masked_storage,
            self.spec,
            objective.space,
            device,
            self.stored_spec,
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
        TrialRecord(worker=this_worker(str(self.objective.trainer.device))).write(trial)
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
            ) from error


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
    """The ``batchlr run`` options each worker gets (see :func:`batchlr.studies.run.workers.worker_arguments`)."""
    progress: Mode = "lines"

    @property
    def trials_per_process(self) -> int | None:
        """The ``n_trials`` of each process's ``optimize``: None runs until the timeout."""
        return self.n_trials if self.n_trials or self.timeout else DEFAULT_N_TRIALS


def run_trials(opened: OpenStudy, plan: TrialPlan, options: RunOptions) -> Stop | None:
    """Run the plan's trials on the opened study, here or in ``plan.workers`` local processes.

    With workers, this process runs no trial: it shows the study's progress, reading the
    storage every :data:`batchlr.studies.run.workers.POLL_SECONDS`, while the workers run with none of their own.

    Under ``--stop auto``, a study that its rule already finds done (see
    :func:`~batchlr.studies.run.stopping.stop_if_done`) runs no trial: returns that stop, else
    None.

    Raises:
        Interrupted: on Ctrl-C or SIGTERM, once the running trial is marked for a retry.
        WorkerFailed: with the first failing worker's error line and exit code.
    """
    if options.stop_auto and (done := stop_if_done(opened.study)):
        return done
    n_trials = plan.trials_per_process
    if plan.workers > 1:
        # Each worker loads its own copy of the data; this process's would sit idle on the GPU.
        opened.objective.release()
        total = n_trials * plan.workers if n_trials else None
        with StudyProgress(plan.progress, total, rounds=None, folds=0) as progress:

            def follow() -> None:
                progress.follow(opened.study)
                close_idle_connections(opened.storage)

            follow()
            run_workers(plan.worker_arguments, plan.workers, options.device, options.seed, follow)
            follow()
        return None
    interrupts = stop_gracefully_on_signals()
    objective = opened.objective
    try:
        with StudyProgress(
            plan.progress,
            n_trials,
            objective.trainer.settings.budget.round_count,
            objective.folds.k,
        ) as progress:

            def on_start(study: optuna.Study) -> None:
                interrupts.check()
                progress.on_start(study)

            def on_round(rounds_done: int) -> None:
                interrupts.check()
                progress.on_round(rounds_done)

            objective.on_round = on_round
            objective.computing = interrupts.computing
            callbacks: list[TrialCallback] = [progress.on_trial]
            if options.stop_auto:
                callbacks.append(StopWhenDone())
            opened.optimize(
                n_trials, plan.timeout, callbacks, plan.max_trials, on_start, interrupts.check
            )
            interrupts.check()  # a signal after the last trial began still ends the run as interrupted
        return None
    except KeyboardInterrupt as error:
        raise Interrupted(
            "interrupted: the running trial is marked FAIL (reason interrupted); run the same "
            "command to resume, retrying it first"
        ) from error


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
    and whole (see :func:`create_study_from`); a new SQLite file is made only then too. When
    several workers start a new study at once, the database lets one create it and the
    others resume it.
    """
    requested = dataclasses.replace(
        requested, dataset=check_names(requested.dataset, requested.model)
    )
    name = study_name or requested.default_study_name()
    file = sqlite_path(storage_url)
    # A file not made yet holds no study: all that can refuse the run (data, model, device,
    # grid, --lr auto) does so before the file is made, so that a refused run leaves none.
    fresh = None
    if file and not file.exists():
        check_sqlite_creatable(storage_url)  # first: set-up can take minutes (--lr auto)
        fresh = prepare(name, None, requested, given, options)
    storage = open_storage(storage_url, access="create", heartbeat=options.heartbeat)
    while True:
        try:
            stored = load_spec(storage, name)
        except UnfinishedStudy:
            settle_unfinished(storage, name, LABELS_ATTR)
            continue
        # Another process may have made the file and the study meanwhile.
        if stored or fresh is None:
            spec, objective = prepare(name, stored, requested, given, options)
        else:
            spec, objective = fresh
        if stored or create_study(storage, name, spec, objective, options.command_line):
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
            1 / objective.data.num_classes,
        ),
        pruner=make_pruner(spec.pruner, objective.trainer.settings.budget.round_count),
    )
    cap = spec.training.max_micro_batch
    if stored and isinstance(cap, int) and stored[0].training.max_micro_batch is None:
        save_micro_batch_cap(study, cap)
    # Only the process that created the study says it: the folds are fixed from now on.
    duplicates = None if stored else duplicates_warning(objective)
    return OpenStudy(
        study, storage, spec, objective, previous_trials, duplicates, stored[0] if stored else None
    )


def sampler_seed(seed: int, previous_trials: int) -> int:
    """The seed of a run's sampler: ``seed`` for a new study; for a resumed one, a seed drawn
    from ``seed`` and the trials so far, so that the run repeats none of the earlier runs'
    proposals, and that two runs with different seeds never share one (as ``seed +
    previous_trials`` would: seed 1 with 0 trials so far and seed 0 with 1, say, two workers
    of ``--workers``)."""
    if not previous_trials:
        return seed
    return int(np.random.SeedSequence([seed, previous_trials]).generate_state(1)[0]) % SEED_LIMIT
