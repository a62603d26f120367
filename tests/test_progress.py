"""Progress: a live display on a terminal, a line per trial otherwise, nothing with --quiet."""

import io

import optuna
from click.testing import CliRunner
from rich.console import Console

from batchlr.cli import main
from batchlr.studies.progress import StudyProgress

ARGS = ["run", "--folds", "2", "--epochs", "2", "--device", "cpu", "--batch-size", "64:128", "--n-trials", "2"]


def test_without_a_terminal_each_trial_is_one_line_and_quiet_prints_none(sqlite_url):
    lines = CliRunner().invoke(main, [*ARGS, "--storage", sqlite_url], catch_exceptions=False).output
    assert sum(line.startswith("trial ") for line in lines.splitlines()) == 2
    quiet = CliRunner().invoke(main, [*ARGS, "--storage", sqlite_url, "--quiet"], catch_exceptions=False).output
    assert not any(line.startswith("trial ") for line in quiet.splitlines()) and "best: trial" in quiet


def test_live_display_counts_trials_and_fold_epochs():
    output = io.StringIO()
    console = Console(file=output, force_terminal=True, width=150)
    study = optuna.create_study(direction="maximize")
    with StudyProgress("live", n_trials=2, rounds=3, folds=2, console=console) as progress:
        def objective(trial):
            for done in range(1, 4):
                progress.on_round(done)
                assert progress.progress.tasks[1].completed == 2 * done
            return 0.5 + trial.number / 10

        study.optimize(objective, n_trials=2, callbacks=[progress.on_trial])
        study_task = progress.progress.tasks[0]
        assert study_task.completed == 2 and "2 complete" in study_task.description and "best 0.6000" in study_task.description
    assert "trial    1  complete" in output.getvalue()
