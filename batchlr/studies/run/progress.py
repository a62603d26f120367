"""Showing a running study: a live display on a terminal, a line per trial otherwise, or nothing."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Literal

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from batchlr.studies.render.run import trial_line

Mode = Literal["live", "lines", "quiet"]


class StudyProgress:
    """Follows a study's trials (done, pruned, running in any process, best so far, time left)
    and, in a process that runs trials, its running trial's fold-epochs.

    Use as a context manager. A process that runs trials passes :meth:`on_start`,
    :meth:`on_trial` and :meth:`on_round` to ``optimize`` and the objective; the parent of
    ``run --workers``, which runs none, calls :meth:`follow` now and then instead.
    """

    def __init__(
        self,
        mode: Mode,
        n_trials: int | None,
        rounds: int | None,
        folds: int,
        console: Console | None = None,
    ) -> None:
        """``n_trials``: the trials this run shows (None: unknown); ``rounds`` and ``folds``: a
        trial's, for its fold-epochs bar; ``rounds`` None where this process runs no trial."""
        self.mode, self.rounds, self.folds = mode, rounds, folds
        self.console = console or Console()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.study_task: TaskID | None = None
        self.trial_task: TaskID | None = None
        self.n_trials = n_trials
        self.shown: set[int] | None = None
        """The numbers of the finished trials :meth:`follow` has seen; None before its first call."""

    def __enter__(self) -> StudyProgress:
        if self.mode == "live":
            self.progress.start()
            self.study_task = self.progress.add_task("trials", total=self.n_trials)
            if self.rounds is not None:
                self.trial_task = self.progress.add_task(
                    "  fold-epochs", total=self.rounds * self.folds
                )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.mode == "live":
            self.progress.stop()

    def on_start(self, study: optuna.Study) -> None:
        """A trial of this process started: it counts as running from now on."""
        if self.trial_task is not None and self.rounds is not None:
            self.progress.reset(self.trial_task, total=self.rounds * self.folds)
        if self.study_task is not None:  # only a live display shows the study's counts
            self._describe(study.get_trials(deepcopy=False))

    def on_round(self, rounds_done: int) -> None:
        """The running trial finished ``rounds_done`` rounds of every fold."""
        if self.trial_task is not None:
            self.progress.update(self.trial_task, completed=rounds_done * self.folds)

    def on_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """A trial of this process finished."""
        self._show_finished(trial)
        if self.study_task is not None:  # only a live display shows the study's counts
            self._describe(study.get_trials(deepcopy=False))

    def follow(self, study: optuna.Study) -> None:
        """Show the trials of any process that finished since the previous call, and the
        study's counts; the first call only notes the trials finished before this run."""
        if self.mode == "quiet":
            return  # nothing to show: spare the storage a read every second
        trials = study.get_trials(deepcopy=False)
        finished = [trial for trial in trials if trial.state.is_finished()]
        if self.shown is None:
            self.shown = {trial.number for trial in finished}
        for trial in finished:
            if trial.number not in self.shown:
                self.shown.add(trial.number)
                self._show_finished(trial)
        self._describe(trials)

    def _show_finished(self, trial: FrozenTrial) -> None:
        if self.mode == "quiet":
            return
        self.console.print(trial_line(trial), highlight=False, soft_wrap=True)
        if self.study_task is not None:
            self.progress.advance(self.study_task)

    def _describe(self, trials: Sequence[FrozenTrial]) -> None:
        if self.study_task is None:
            return
        counts = {
            state: sum(t.state == state for t in trials)
            for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        }
        values = [t.values[0] for t in trials if t.state == TrialState.COMPLETE]
        best = f", best {max(values):.4f}" if values else ""
        self.progress.update(
            self.study_task,
            description=f"trials: {counts[TrialState.COMPLETE]} complete, {counts[TrialState.PRUNED]} pruned, "
            f"{counts[TrialState.RUNNING]} running{best}",
        )
