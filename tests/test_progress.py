"""Progress: a live display on a terminal, a line per trial otherwise, nothing with --quiet."""

import io
import os
import pty
import re
import select
import subprocess
import sys
import time

import optuna
import pytest
from click.testing import CliRunner
from rich.console import Console

from batchlr.cli import main
from batchlr.studies.render import outcome, trial_line
from batchlr.studies.run import StudyProgress
from batchlr.studies.store.data_facts import DATA_ATTR, DataFacts

ARGS = [
    "run",
    "--folds",
    "2",
    "--epochs",
    "2",
    "--device",
    "cpu",
    "--batch-size",
    "64:128",
    "--n-trials",
    "2",
]


def test_without_a_terminal_each_trial_is_one_line_and_quiet_prints_none(sqlite_url):
    lines = (
        CliRunner().invoke(main, [*ARGS, "--storage", sqlite_url], catch_exceptions=False).output
    )
    assert sum(line.startswith("trial ") for line in lines.splitlines()) == 2
    quiet = (
        CliRunner()
        .invoke(main, [*ARGS, "--storage", sqlite_url, "--quiet"], catch_exceptions=False)
        .output
    )
    assert (
        not any(line.startswith("trial ") for line in quiet.splitlines()) and "best: trial" in quiet
    )


def test_live_display_counts_trials_and_fold_epochs_and_its_own_running_trial():
    output = io.StringIO()
    console = Console(file=output, force_terminal=True, width=150)
    study = optuna.create_study(direction="maximize")
    with StudyProgress("live", n_trials=2, rounds=3, folds=2, console=console) as progress:

        def objective(trial):
            progress.on_start(trial.study)
            assert "1 running" in progress.progress.tasks[0].description
            for done in range(1, 4):
                progress.on_round(done)
                assert progress.progress.tasks[1].completed == 2 * done
            return 0.5 + trial.number / 10

        study.optimize(objective, n_trials=2, callbacks=[progress.on_trial])
        study_task = progress.progress.tasks[0]
        assert (
            study_task.completed == 2
            and "2 complete" in study_task.description
            and "best 0.6000" in study_task.description
        )
    assert "trial    1  complete" in output.getvalue()


def test_following_a_study_shows_each_trial_finished_since_the_first_look_once():
    output = io.StringIO()
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda trial: 0.1, n_trials=1)
    with StudyProgress(
        "live",
        n_trials=4,
        rounds=None,
        folds=0,
        console=Console(file=output, force_terminal=True, width=150),
    ) as progress:
        progress.follow(study)
        running = [study.ask(), study.ask()]
        progress.follow(study)
        assert (
            progress.progress.tasks[0].completed == 0
            and "2 running" in progress.progress.tasks[0].description
        )
        study.tell(running[0], 0.7)
        progress.follow(study)
        progress.follow(study)
        assert len(progress.progress.tasks) == 1, (
            "no fold-epochs bar where no trial runs in this process"
        )
        assert (
            progress.progress.tasks[0].completed == 1
            and "1 running, best 0.7000" in progress.progress.tasks[0].description
        )
    shown = output.getvalue()
    assert shown.count("trial    1  complete") == 1 and "trial    0" not in shown


def on_a_terminal(*args: str, timeout: float = 240) -> str:
    """What ``batchlr ARGS`` shows on a terminal (a pseudo-terminal), escape codes and all."""
    controller, terminal = pty.openpty()
    environment = {**os.environ, "COLUMNS": "150", "TERM": "xterm"}
    process = subprocess.Popen(
        [sys.executable, "-m", "batchlr", *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=environment,
    )
    os.close(terminal)
    shown, deadline = bytearray(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([controller], [], [], 1)[0]:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: every process writing to it ended
                break
            if not chunk:
                break
            shown += chunk
    os.close(controller)
    assert process.wait(timeout=max(1, deadline - time.monotonic())) == 0, shown.decode(
        errors="replace"
    )
    return shown.decode(errors="replace")


@pytest.mark.process
def test_on_a_terminal_workers_show_one_opening_one_live_display_and_one_outcome(tmp_path):
    storage = f"sqlite:///{tmp_path / 'w.db'}"
    shown = on_a_terminal(
        *ARGS, "--storage", storage, "--study", "w", "--workers", "2", "--heartbeat", "2"
    )
    assert shown.count("study w (") == 1 and shown.count("best: trial") == 1, shown
    assert "2 local workers, 2 trials each (4 in all)" in shown
    assert "fold-epochs" not in shown, "no worker draws a display of its own"
    complete, pruned, running = map(
        int, re.findall(r"trials: (\d+) complete, (\d+) pruned, (\d+) running", shown)[-1]
    )
    assert (complete + pruned, running) == (4, 0), shown


@pytest.mark.process
def test_on_a_terminal_the_running_count_includes_this_process_s_own_trial(tmp_path):
    shown = on_a_terminal(*ARGS, "--storage", f"sqlite:///{tmp_path / 'one.db'}")
    assert "trials: 0 complete, 0 pruned, 1 running" in shown, shown


@pytest.mark.parametrize(
    ("reason", "ending"), [("pruned", "optimizer=adam"), ("diverged", "diverged")]
)
def test_a_trial_line_says_why_a_trial_stopped_only_where_its_state_does_not(reason, ending):
    trial = optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED,
        params={"batch_size": 32, "lr": 1e-3, "optimizer": "adam"},
        distributions={
            "batch_size": optuna.distributions.IntDistribution(16, 64),
            "lr": optuna.distributions.FloatDistribution(1e-5, 0.1, log=True),
            "optimizer": optuna.distributions.CategoricalDistribution(["adam"]),
        },
        user_attrs={"reason": reason},
    )
    line = trial_line(trial)
    assert line.split()[2] == "pruned" and line.endswith(ending)


@pytest.mark.parametrize(("accuracy", "warned"), [(0.18, True), (0.5, False)])
def test_the_outcome_warns_when_no_trial_learned(accuracy, warned):
    study = optuna.create_study(direction="maximize")
    study.set_user_attr(DATA_ATTR, DataFacts((1, 8, 8), 10, (0.5,), (0.2,)).to_record())
    study.add_trial(
        optuna.trial.create_trial(
            value=accuracy,
            params={"lr": 1e-7},
            distributions={"lr": optuna.distributions.FloatDistribution(1e-8, 1e-6, log=True)},
        )
    )
    # 0.19 is a tenth of the way from guessing one of 10 classes to 1
    assert ("warning: no trial learned" in outcome(study, "sqlite:///x.db")) == warned
