"""Showing a running study: a live display on a terminal, a line per trial otherwise, or nothing."""

from __future__ import annotations

from types import TracebackType
from typing import Literal

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from batchlr.studies.render import trial_line

Mode = Literal["live", "lines", "quiet"]


class StudyProgress:
    """Follows a study's trials (done, pruned, running elsewhere, best so far, time left) and the
    running trial's fold-epochs.

    Use as a context manager; pass :meth:`on_trial` to ``optimize`` as a callback and
    :meth:`on_round` to the objective.
    """

    def __init__(self, mode: Mode, n_trials: int | None, rounds: int, folds: int, console: Console | None = None) -> None:
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

    def __enter__(self) -> StudyProgress:
        if self.mode == "live":
            self.progress.start()
            self.study_task = self.progress.add_task("trials", total=self.n_trials)
            self.trial_task = self.progress.add_task("  fold-epochs", total=self.rounds * self.folds)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.mode == "live":
            self.progress.stop()

    def on_round(self, rounds_done: int) -> None:
        """The running trial finished ``rounds_done`` rounds of every fold."""
        if self.trial_task is not None:
            self.progress.update(self.trial_task, completed=rounds_done * self.folds)

    def on_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """A trial of this process finished."""
        if self.mode == "lines":
            self.console.print(trial_line(trial), highlight=False, soft_wrap=True)
        if self.study_task is None or self.trial_task is None:
            return
        trials = study.get_trials(deepcopy=False)
        counts = {state: sum(t.state == state for t in trials) for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)}
        values = [t.values[0] for t in trials if t.state == TrialState.COMPLETE]
        best = f", best {max(values):.4f}" if values else ""
        self.progress.console.print(trial_line(trial), highlight=False, soft_wrap=True)
        self.progress.update(
            self.study_task,
            advance=1,
            description=f"trials: {counts[TrialState.COMPLETE]} complete, {counts[TrialState.PRUNED]} pruned, "
            f"{counts[TrialState.RUNNING]} running{best}",
        )
        self.progress.reset(self.trial_task, total=self.rounds * self.folds)
