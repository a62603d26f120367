"""The CLI end to end on digits with tiny settings, in process."""

import json
import shlex
import sys
from pathlib import Path

import click
import optuna
import pytest
from click.testing import CliRunner

import batchlr
from batchlr.cli import main
from tests.conftest import copy_database

TINY = [
    "--dataset",
    "digits",
    "--folds",
    "2",
    "--epochs",
    "2",
    "--batch-size",
    "32:128",
    "--device",
    "cpu",
]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def trained_study(tmp_path_factory) -> Path:
    """A 3-trial study trained once for the module; tests get copies."""
    database = tmp_path_factory.mktemp("tiny") / "tiny.db"
    result = invoke(
        "run",
        "--storage",
        f"sqlite:///{database}",
        "--study",
        "tiny",
        *TINY,
        "--n-trials",
        "3",
        "--seed",
        "1",
    )
    assert result.exit_code == 0, result.output
    return database


@pytest.fixture
def study_db(trained_study, tmp_path) -> str:
    """A copy of the trained study of this test's own, which it may change."""
    return f"sqlite:///{copy_database(trained_study, tmp_path)}"


def test_run_creates_a_study_that_optuna_reads(study_db):
    study = optuna.load_study(study_name="tiny", storage=study_db)
    assert len(study.trials) == 3
    assert study.user_attrs["folds"] == 2 and study.user_attrs["batch_size"] == [32, 128]
    for trial in study.trials:
        assert trial.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        assert 32 <= trial.params["batch_size"] <= 128


def test_run_again_resumes_with_stored_settings(study_db):
    result = invoke(
        "run",
        "--storage",
        study_db,
        "--study",
        "tiny",
        "--n-trials",
        "1",
        "--seed",
        "2",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="tiny", storage=study_db)
    assert len(study.trials) == 4
    # Settings not given again came from the study, not the CLI defaults (3 folds, 10 epochs).
    assert len(study.trials[-1].intermediate_values) <= 2
    assert len(study.trials[-1].user_attrs["fold_scores"]) == 2


@pytest.mark.parametrize(
    ("option", "value", "created"),
    [
        ("--lr", "1e-3:1e-1", "unset, a range per optimizer (sgd 0.001:1, adam 1e-05:0.1, "),
        ("--lr", "auto", "unset, a range per optimizer (sgd 0.001:1, adam 1e-05:0.1, "),
        ("--epochs", "3", "2"),
        ("--optimizers", "adam", "sgd,adam,rmsprop"),
        ("--dataset", "cifar2", "digits"),
    ],
)
def test_resuming_with_other_settings_is_a_one_line_usage_error(study_db, option, value, created):
    result = invoke(
        "run", "--storage", study_db, "--study", "tiny", option, value, "--n-trials", "1"
    )
    assert result.exit_code == 2
    assert f"created with {option} {created}" in result.output
    assert "Traceback" not in result.output
    assert len(optuna.load_study(study_name="tiny", storage=study_db).trials) == 3


USER_LAYERS = """
from torch import nn

def linear(input_shape, num_classes):
    channels, height, width = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * height * width, num_classes))
"""

USER_MODELS = """

def linear(input_shape, num_classes):
    import my_layers  # beside this file, imported only when the model is built

    return my_layers.linear(input_shape, num_classes)

def not_a_module(input_shape, num_classes):
    return "linear"
"""


def test_a_user_model_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(USER_MODELS)
    (tmp_path / "my_layers.py").write_text(USER_LAYERS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [path for path in sys.path if path not in ("", str(tmp_path))])
    (tmp_path / "two words").mkdir()
    storage = f"sqlite:///{tmp_path / 'two words' / 'user.db'}"
    args = [
        "run",
        "--storage",
        storage,
        "--folds",
        "2",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--n-trials",
        "1",
    ]
    result = invoke(*args, "--study", "my model", "--model", "my_models:linear")
    assert result.exit_code == 0, result.output
    # On the path only while the user's code runs: left there, a file in it named as a module
    # imported later would replace that module.
    assert str(tmp_path) not in sys.path
    assert (
        optuna.load_study(study_name="my model", storage=storage)
        .trials[0]
        .user_attrs["param_count"]
        == 64 * 10 + 10
    )
    # The suggested next command pastes into a shell as it is.
    see_it = next(line for line in result.output.splitlines() if line.startswith("see it:"))
    assert shlex.split(see_it.removeprefix("see it:")) == [
        "batchlr",
        "show",
        "my model",
        "--storage",
        storage,
    ]
    result = invoke(*args, "--study", "broken", "--model", "my_models:not_a_module")
    assert result.exit_code == 1 and "not a torch.nn.Module" in result.output
    assert "broken" not in optuna.get_all_study_names(storage)


def test_show_a_study_with_no_complete_trial_says_why(sqlite_url):
    from batchlr.studies.store import StudySpec

    study = optuna.create_study(study_name="stuck", storage=sqlite_url, direction="maximize")
    for key, value in StudySpec().to_attrs().items():
        study.set_user_attr(key, value)
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED, user_attrs={"reason": "diverged"}
        )
    )
    result = invoke("show", "stuck", "--storage", sqlite_url)
    assert result.exit_code == 0, result.output
    assert "no complete trial yet (ended: 1 diverged)" in result.output
    assert (
        json.loads(invoke("show", "stuck", "--storage", sqlite_url, "--json").output)["best"]
        is None
    )


def test_studies_lists_the_study_with_counts(study_db):
    result = invoke("studies", "--storage", study_db)
    assert result.exit_code == 0
    header, row = result.output.splitlines()
    assert header.split()[:3] == ["study", "complete", "pruned"]
    name, complete, pruned, *_ = row.split()
    assert name == "tiny" and int(complete) + int(pruned) == 3


def test_show_json_names_the_best_trial(study_db):
    result = invoke("show", "tiny", "--storage", study_db, "--json", "--top", "2")
    report = json.loads(result.output)
    best = optuna.load_study(study_name="tiny", storage=study_db).best_trial
    assert report["best"]["number"] == best.number and report["best"]["params"] == best.params
    assert len(report["top"]) <= 2 and report["top"][0]["value"] == best.value


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_export_round_trips_through_load_config(study_db, tmp_path, suffix):
    import torch

    output = tmp_path / f"best{suffix}"
    assert invoke("export", "tiny", "--storage", study_db, "--output", str(output)).exit_code == 0
    best = optuna.load_study(study_name="tiny", storage=study_db).best_trial
    cfg = batchlr.load_config(output)
    assert cfg.params == best.params and cfg.value == best.value and cfg.trial == best.number
    assert cfg.fold_scores == best.user_attrs["fold_scores"]
    settings = cfg.settings
    assert (settings.dataset, settings.model, settings.training.budget.amount, settings.folds) == (
        "digits",
        "convnet",
        2,
        2,
    )
    optimizer = cfg.make_optimizer(torch.nn.Linear(2, 2).parameters())
    expected = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}[
        cfg.optimizer
    ]
    assert type(optimizer) is expected and optimizer.param_groups[0]["lr"] == cfg.lr > 0


def test_default_study_name_comes_from_data_set_and_model(sqlite_url):
    assert invoke("run", "--storage", sqlite_url, *TINY, "--n-trials", "1").exit_code == 0
    assert optuna.get_all_study_names(sqlite_url) == ["digits-convnet"]


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--batch-size", "512:16"],
        ["run", "--batch-size", "0:16"],
        ["run", "--lr", "1:0.001"],
        ["run", "--folds", "1"],
        ["run", "--dataset", "nosuchset"],
        ["run", "--optimizers", "sgd,lion"],
        ["run", "--model", "nosuchmodel"],
        ["run", "--storage", "notadb://x"],
    ],
)
def test_bad_options_exit_2_with_one_line_and_no_traceback(args, tmp_path):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Error" in result.output


def test_commands_on_a_missing_study_fail_cleanly(study_db):
    result = CliRunner().invoke(
        main, ["export", "nosuchstudy", "--storage", study_db, "--output", "x.json"]
    )
    assert result.exit_code == 1 and "tiny" in result.output and "Traceback" not in result.output


def test_debug_shows_the_traceback(tmp_path):
    result = CliRunner().invoke(
        main, ["--debug", "studies", "--storage", f"sqlite:///{tmp_path / 'none.db'}"]
    )
    assert result.exit_code == 1 and result.exception is not None
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize(
    ("sampler", "pruner"),
    [("tpe", "hyperband"), ("gp", "wilcoxon"), ("random", "none"), ("grid", "median")],
)
def test_every_sampler_and_pruner_runs(sqlite_url, sampler, pruner):
    args = [
        "run",
        "--storage",
        sqlite_url,
        "--study",
        "s",
        "--folds",
        "2",
        "--epochs",
        "2",
        "--device",
        "cpu",
    ]
    args += [
        "--batch-size",
        "64:128",
        "--lr",
        "1e-3:1e-2",
        "--sampler",
        sampler,
        "--pruner",
        pruner,
        "--n-trials",
        "3",
    ]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    trials = optuna.load_study(study_name="s", storage=sqlite_url).trials
    assert len(trials) == 3 and all(trial.state.is_finished() for trial in trials)
    if sampler == "grid":
        assert {trial.params["batch_size"] for trial in trials} <= {64, 128}


def test_grid_sampler_stops_when_the_grid_is_done(sqlite_url):
    args = [
        "run",
        "--storage",
        sqlite_url,
        "--study",
        "g",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--device",
        "cpu",
    ]
    args += [
        "--batch-size",
        "64:128",
        "--lr",
        "1e-3:1e-2",
        "--optimizers",
        "adam",
        "--sampler",
        "grid",
        "--n-trials",
        "50",
    ]
    assert invoke(*args).exit_code == 0
    trials = optuna.load_study(study_name="g", storage=sqlite_url).trials
    assert sorted((t.params["batch_size"], t.params["lr"]) for t in trials) == [
        (64, 1e-3),
        (64, 1e-2),
        (128, 1e-3),
        (128, 1e-2),
    ]


def test_every_option_of_every_command_has_help_and_help_shows_defaults():
    for name, command in main.commands.items():
        undocumented = [
            param.name
            for param in command.params
            if isinstance(param, click.Option) and not param.hidden and not param.help
        ]
        assert not undocumented, f"{name}: {undocumented}"
    shown = " ".join(CliRunner().invoke(main, ["run", "--help"]).output.split())
    assert (
        "Cross-validation folds, 2 to 100. [default: 3]" in shown
        and "env var: BATCHLR_STORAGE" in shown
        and "env var: BATCHLR_DATA_DIR" in shown
    )
    refit_help = " ".join(CliRunner().invoke(main, ["refit", "--help"]).output.split())
    assert "env var: BATCHLR_DATA_DIR" in refit_help and "Seeds model initialisation" in refit_help


def test_lr_find_counts_learning_rates_with_lr_count_and_still_takes_steps():
    args = ["lr-find", "--device", "cpu", "--batch-size", "32", "--json"]
    counted = json.loads(invoke(*args, "--lr-count", "20").output)
    assert len(counted["lrs"]) <= 20
    result = CliRunner().invoke(main, [*args, "--steps", "20"])
    assert result.exit_code == 0 and json.loads(result.stdout)["lrs"] == counted["lrs"]
    assert "--steps is now --lr-count" in result.stderr
    assert "--steps" not in CliRunner().invoke(main, ["lr-find", "--help"]).output
