"""--stop auto: the run ends when more trials stopped helping, judged by the folds' noise."""

from __future__ import annotations

import json

import numpy as np
import optuna
from click.testing import CliRunner

from batchlr.cli import main
from batchlr.objectives.trial_record import TrialRecord
from batchlr.studies.run.stopping import PATIENCE, STOP_MIN_TRIALS, StopWhenDone
from batchlr.studies.store import last_stop
from batchlr.studies.store.data_facts import Stop, save_stop


def _study(
    accuracy, n_trials: int = 60, noise: float = 0.05, pruned_share: int = 0, reason: str = "pruned"
) -> optuna.Study:
    """A study of ``accuracy(trial)`` plus fold noise (sd ``noise`` over 3 folds), with --stop
    auto's callback; with ``pruned_share`` N, all but every Nth trial is pruned for ``reason``
    after reporting its accuracy."""
    rng = np.random.default_rng(0)

    def objective(trial: optuna.Trial) -> float:
        mean = accuracy(trial)
        if pruned_share and trial.number % pruned_share:
            trial.report(mean, 0)
            TrialRecord(reason=reason).write(trial)
            raise optuna.TrialPruned()
        scores = [float(mean + rng.normal(0, noise)) for _ in range(3)]
        TrialRecord(fold_scores=scores).write(trial)
        return float(np.mean(scores))

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, n_trials=n_trials, callbacks=[StopWhenDone()])
    return study


def test_a_study_whose_trials_stopped_improving_is_stopped_and_says_why():
    study = _study(lambda trial: 0.8 + 0 * trial.suggest_float("x", 0, 1))  # nothing to gain
    assert STOP_MIN_TRIALS <= len(study.trials) < 60
    stop = last_stop(study)
    assert stop is not None and stop.finished_trials == stop.next_trial == len(study.trials)
    assert f"none of the last {PATIENCE}" in stop.reason


def test_pruned_trials_count_as_trials_that_did_not_beat_the_best():
    # as under ASHA, which prunes most trials: 13 of these 40 complete, too few to judge alone
    study = _study(lambda trial: 0.8 + 0 * trial.suggest_float("x", 0, 1), 40, pruned_share=3)
    stop = last_stop(study)
    assert stop is not None and stop.finished_trials == len(study.trials) < 40


def test_trials_pruned_for_memory_do_not_count():
    study = _study(
        lambda trial: 0.8 + 0 * trial.suggest_float("x", 0, 1), 40, pruned_share=3, reason="oom"
    )
    assert len(study.trials) == 40 and last_stop(study) is None


def test_a_pruned_trial_whose_last_report_beats_the_best_counts_as_beating_it():
    def accuracy(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        return 0.8 if trial.number % 3 == 0 else 0.5 + 0.02 * trial.number

    study = _study(accuracy, 40, noise=0.001, pruned_share=3)
    assert len(study.trials) == 40 and last_stop(study) is None


def test_a_study_that_still_improves_runs_on():
    # every trial beats the last by 0.01, twenty times the standard error of its folds
    study = _study(lambda trial: 0.1 + 0.01 * trial.number, n_trials=40, noise=0.001)
    assert len(study.trials) == 40 and last_stop(study) is None


def test_stop_auto_refuses_two_objectives_before_the_study_is_created(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    args = ["run", "--storage", storage, "--objectives", "accuracy,time", "--stop", "auto"]
    result = CliRunner().invoke(main, [*args, "--device", "cpu", "--folds", "2", "--epochs", "1"])
    assert result.exit_code == 2 and "--stop auto judges one objective" in result.output
    assert "(new)" not in result.output and not optuna.get_all_study_names(storage)
    tiny = ["--device", "cpu", "--folds", "2", "--epochs", "1", "--n-trials", "1"]
    created = CliRunner().invoke(main, [*args[:-2], "--study", "t", *tiny])
    assert created.exit_code == 0, created.output
    resumed = CliRunner().invoke(
        main, ["run", "--storage", storage, "--study", "t", "--stop", "auto"]
    )
    assert resumed.exit_code == 2
    assert "study 't' has two (accuracy,time): drop --stop auto to resume it" in resumed.output


def test_a_run_too_short_for_stop_auto_to_judge_says_so_not_an_earlier_runs_stop(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    args = ["run", "--storage", storage, "--study", "s", "--pruner", "none", "--n-trials", "1"]
    first = CliRunner().invoke(main, [*args, "--device", "cpu", "--folds", "2", "--epochs", "1"])
    assert first.exit_code == 0, first.output
    save_stop(optuna.load_study(study_name="s", storage=storage), Stop(1, "an earlier run's", 1))
    result = CliRunner().invoke(main, [*args, "--stop", "auto"])
    assert result.exit_code == 0, result.output
    assert "stopped by" not in result.output
    assert (
        f"--stop auto has not judged: 2 finished trials, it judges from {STOP_MIN_TRIALS}"
        in result.output.splitlines()
    )


def test_a_rerun_of_a_study_that_stopped_improving_runs_no_trial_and_says_why(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    args = ["run", "--storage", storage, "--study", "s", "--device", "cpu", "--n-trials", "1"]
    first = CliRunner().invoke(main, [*args, "--folds", "2", "--epochs", "1"])
    assert first.exit_code == 0, first.output
    study = optuna.load_study(study_name="s", storage=storage)
    (trained,) = study.trials
    study.add_trials(  # a history that stopped improving, at the trained trial's params
        optuna.trial.create_trial(
            params=trained.params,
            distributions=trained.distributions,
            value=0.5,
            user_attrs=TrialRecord(fold_scores=[0.45, 0.55]).to_attrs(),
        )
        for _ in range(STOP_MIN_TRIALS)
    )
    stopped = CliRunner().invoke(main, [*args, "--stop", "auto"])
    assert stopped.exit_code == 0, stopped.output
    assert len(study.trials) == STOP_MIN_TRIALS + 1
    assert (
        f"stopped by --stop auto before a trial: the study's {STOP_MIN_TRIALS + 1} finished "
        "trials had already stopped improving (none of the last"
    ) in stopped.output
    shown = CliRunner().invoke(main, ["show", "s", "--storage", storage])
    assert (
        f"--stop auto ended a run before trial {STOP_MIN_TRIALS + 1}: none of the last"
        in shown.output
    )
    as_json = json.loads(
        CliRunner().invoke(main, ["show", "s", "--storage", storage, "--json"]).output
    )
    assert (
        as_json["stop"]["next_trial"] == as_json["stop"]["finished_trials"] == STOP_MIN_TRIALS + 1
    )
    # A later run without --stop auto runs its trial and says nothing of the earlier stop.
    more = CliRunner().invoke(main, args)
    assert more.exit_code == 0, more.output
    assert len(study.trials) == STOP_MIN_TRIALS + 2 and "--stop auto" not in more.output
